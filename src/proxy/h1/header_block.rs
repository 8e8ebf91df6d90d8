//! A parsed head's header fields, turned into `http` types without copying their values.
//!
//! httparse borrows the read buffer, but the buffer must be split and frozen before values
//! can be slices of it. So a parse first notes where each field lies (`Spans`), the parser's
//! borrow ends, the head is frozen, and the fields are made from the offsets. Both heads we
//! read, a client's request and a target's response, go this way under the same limits.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use std::mem::MaybeUninit;

/// The most header fields a head may carry (hyper's limit too).
pub const MAX_HEADERS: usize = 100;
/// The largest head accepted, the same as hyper's read buffer limit.
pub const MAX_HEAD_LEN: usize = 8192 + 4096 * 100;

/// Room for httparse to parse fields into, without initialising it first.
pub type Uninit<'h> = [MaybeUninit<httparse::Header<'h>>; MAX_HEADERS];

pub fn uninit<'h>() -> Uninit<'h> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Why a head cannot be read at all.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockError {
    /// Over `MAX_HEAD_LEN` bytes or `MAX_HEADERS` fields.
    TooLarge,
    Malformed(httparse::Error),
}

/// What a parse of the `buffered` bytes came to: the head's length once it is complete,
/// `None` while more is to be read.
pub fn head_length(
    status: httparse::Result<usize>,
    buffered: usize,
) -> Result<Option<usize>, BlockError> {
    match status {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_LEN => Err(BlockError::TooLarge),
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) if buffered > MAX_HEAD_LEN => Err(BlockError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(BlockError::TooLarge),
        Err(error) => Err(BlockError::Malformed(error)),
    }
}

/// Where each field's name and value lie in the head. It is large (1.6 KiB), so it is
/// filled where it lies rather than returned.
pub struct Spans {
    spans: [(u32, u32, u32, u32); MAX_HEADERS],
    count: usize,
}

/// A field name or value the `http` types refuse; carries the name, for the error.
#[derive(Debug)]
pub struct InvalidField(pub String);

impl Spans {
    pub fn new() -> Self {
        Spans {
            spans: [(0, 0, 0, 0); MAX_HEADERS],
            count: 0,
        }
    }

    /// Notes where `fields`, parsed from `buf`, lie in it.
    pub fn record(&mut self, buf: &[u8], fields: &[httparse::Header<'_>]) {
        let base = buf.as_ptr() as usize;
        let offset = |slice: &[u8]| (slice.as_ptr() as usize - base) as u32;
        for (span, field) in self.spans.iter_mut().zip(fields) {
            let name = offset(field.name.as_bytes());
            let value = offset(field.value);
            *span = (
                name,
                name + field.name.len() as u32,
                value,
                value + field.value.len() as u32,
            );
        }
        self.count = fields.len();
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// The fields of `head` (the frozen buffer the spans were taken of), in order.
    pub fn fields<'a>(
        &'a self,
        head: &'a Bytes,
    ) -> impl Iterator<Item = Result<(HeaderName, HeaderValue), InvalidField>> + 'a {
        self.spans[..self.count].iter().map(
            move |&(name_start, name_end, value_start, value_end)| {
                let name = &head[name_start as usize..name_end as usize];
                let invalid = || InvalidField(String::from_utf8_lossy(name).into_owned());
                let name = HeaderName::from_bytes(name).map_err(|_| invalid())?;
                let value = head.slice(value_start as usize..value_end as usize);
                let value = HeaderValue::from_maybe_shared(value).map_err(|_| invalid())?;
                Ok((name, value))
            },
        )
    }
}
