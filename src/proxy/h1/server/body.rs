//! `ClientBody`: a request's body, read from the client connection as the request's
//! consumer asks for it.
//!
//! Nothing is read ahead and nothing is copied: data comes off the connection's read buffer
//! as the framing delimits it (`message_body`), and whatever follows the body stays there
//! for the next request. A client that sent `Expect: 100-continue` gets its `100 Continue`
//! the first time the body is wanted and not yet there, so a request refused before its
//! body is read never makes the client send it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::io::{ClientIo, READ_RESERVE};
use crate::proxy::h1::chunked::ChunkedError;
use crate::proxy::h1::message_body::Step;

/// What a client that waits before sending its body is told.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("reading the request body from the client failed: {0}")]
    Read(#[from] io::Error),
    #[error("the client closed the connection before the end of the request body")]
    Truncated,
    #[error("the client's chunked request body is malformed: {0}")]
    Chunked(#[from] ChunkedError),
}

impl ClientBodyError {
    /// The client sent a body that breaks its framing, rather than stopping sending it.
    pub fn is_malformed(&self) -> bool {
        matches!(self, ClientBodyError::Chunked(_))
    }
}

pub struct ClientBody {
    /// `None` for a request without a body, and once the body is over.
    io: Option<Arc<ClientIo>>,
}

impl ClientBody {
    pub fn empty() -> Self {
        ClientBody { io: None }
    }

    /// The body whose framing `io`'s read side was just set to.
    pub fn new(io: Arc<ClientIo>) -> Self {
        ClientBody { io: Some(io) }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        let Some(io) = &this.io else {
            return Poll::Ready(None);
        };
        let mut guard = io.lock();
        let read = &mut *guard;
        let failed = 'body: loop {
            match read.body.step(&mut read.buf) {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Step::End) => break None,
                Ok(Step::NeedMore) => {}
                Err(error) => break Some(error.into()),
            }
            while let Some(interim) = read.interim.filter(|rest| !rest.is_empty()) {
                match ready!(read.poll_write(cx, interim)) {
                    Ok(written) => read.interim = Some(&interim[written..]),
                    Err(error) => break 'body Some(error.into()),
                }
            }
            match ready!(read.poll_fill(cx, READ_RESERVE)) {
                Ok(0) if read.body.closed() => break None,
                Ok(0) => break Some(ClientBodyError::Truncated),
                Ok(_) => {}
                Err(error) => break Some(error.into()),
            }
        };
        read.broken |= failed.is_some();
        drop(guard);
        this.io = None;
        Poll::Ready(failed.map(Err))
    }

    fn is_end_stream(&self) -> bool {
        self.io.as_ref().is_none_or(|io| io.lock().body.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        self.io
            .as_ref()
            .map_or(SizeHint::with_exact(0), |io| io.lock().body.size_hint())
    }
}
