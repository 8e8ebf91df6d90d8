//! `RequestStamp`: the `X-Request-Id` and `X-Request-Start` a request carries to its target,
//! decided when it arrives.
//!
//! A client's own values are kept and go through with its other headers; the proxy's are
//! held here, on the stack, and written straight into the head encoded for the target
//! (`request_head`), never into the request's `HeaderMap`: a `HeaderValue` per request is
//! an allocation, and an insert a hash, on the hot path. So whatever reads the request's
//! headers to show them as the target gets them (`--log-request-header`) asks the stamp
//! too (`added`).

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::proxy::h1::header_lines::HeaderLines;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");

/// Room for `t=` and the digits of any `u64`.
const START_CAPACITY: usize = 2 + 20;

/// The request's id, as logged and as the target sees it.
#[derive(Clone)]
pub enum RequestId {
    /// The client's `X-Request-Id`, which goes to the target as it came.
    Sent(HeaderValue),
    /// A random (v4) UUID in hyphenated form, which the proxy adds.
    Generated([u8; UUID_LENGTH]),
}

const UUID_LENGTH: usize = uuid::fmt::Hyphenated::LENGTH;

/// `uuid` in lower-case hyphenated form (`8-4-4-4-12` hex digits), as `uuid`'s own
/// formatter writes it, in a quarter of the instructions: four words turned into hex
/// digits eight at a time, rather than a table lookup per digit.
fn hyphenated(uuid: u128) -> [u8; UUID_LENGTH] {
    let word = |shift: u32| hex_digits((uuid >> shift) as u32);
    let (a, b, c, d) = (word(96), word(64), word(32), word(0));
    let mut text = [b'-'; UUID_LENGTH];
    text[..8].copy_from_slice(&a);
    text[9..13].copy_from_slice(&b[..4]);
    text[14..18].copy_from_slice(&b[4..]);
    text[19..23].copy_from_slice(&c[..4]);
    text[24..28].copy_from_slice(&c[4..]);
    text[28..].copy_from_slice(&d);
    text
}

/// The eight lower-case hex digits of `value`, most significant first: each nibble is
/// spread to a byte of its own (halves, then bytes, then nibbles), and all eight become
/// digits at once (`'0'` added, and the gap up to `'a'` where the nibble is ten or more).
fn hex_digits(value: u32) -> [u8; 8] {
    const NIBBLES: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let spread = u64::from(value);
    let spread = (spread | spread << 16) & 0x0000_ffff_0000_ffff;
    let spread = (spread | spread << 8) & 0x00ff_00ff_00ff_00ff;
    let spread = (spread | spread << 4) & NIBBLES;
    let letters = (spread + ONES * 6) >> 4 & ONES;
    (spread + ONES * u64::from(b'0') + letters * u64::from(b'a' - b'0' - 10)).to_be_bytes()
}

#[cfg(test)]
impl RequestId {
    /// The id as text (the request log takes its bytes, see `RequestLog`): empty when the
    /// client's is not visible ASCII.
    pub fn as_str(&self) -> &str {
        match self {
            RequestId::Sent(value) => value.to_str().unwrap_or(""),
            // A hyphenated UUID is ASCII.
            RequestId::Generated(text) => std::str::from_utf8(text).unwrap_or(""),
        }
    }
}

pub struct RequestStamp {
    id: RequestId,
    /// `t=<unix ms>` when the client sent no `X-Request-Start`.
    start: Option<([u8; START_CAPACITY], usize)>,
}

impl RequestStamp {
    /// Keeps the client's id and start, or makes the ones it did not send.
    pub fn new(headers: &HeaderMap, now_unix_ms: u128) -> Self {
        // One pass over the headers, cheaper than a lookup of each (a hash and a probe).
        let (mut sent_id, mut sent_start) = (None, false);
        for (name, value) in headers {
            if *name == X_REQUEST_ID {
                sent_id = sent_id.or(Some(value));
            } else if *name == X_REQUEST_START {
                sent_start = true;
            }
        }
        let id = match sent_id {
            Some(sent) => RequestId::Sent(sent.clone()),
            None => RequestId::Generated(hyphenated(uuid::Uuid::new_v4().as_u128())),
        };
        let start = (!sent_start).then(|| {
            let mut start = [0; START_CAPACITY];
            start[..2].copy_from_slice(b"t=");
            let mut digits = itoa::Buffer::new();
            // As a u64: formatting a u128 costs twice as much, for digits never needed.
            let digits = digits
                .format(u64::try_from(now_unix_ms).unwrap_or(u64::MAX))
                .as_bytes();
            start[2..2 + digits.len()].copy_from_slice(digits);
            (start, 2 + digits.len())
        });
        RequestStamp { id, start }
    }

    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// The headers the proxy adds, with their values.
    fn lines(&self) -> impl Iterator<Item = (&HeaderName, &[u8])> {
        let start = self
            .start
            .as_ref()
            .map(|(text, len)| (&X_REQUEST_START, &text[..*len]));
        let id = match &self.id {
            RequestId::Sent(_) => None,
            RequestId::Generated(text) => Some((&X_REQUEST_ID, &text[..])),
        };
        start.into_iter().chain(id)
    }

    /// The value the proxy adds as `name`, if it adds that header.
    pub fn added(&self, name: &HeaderName) -> Option<&[u8]> {
        self.lines()
            .find(|(added, _)| *added == name)
            .map(|(_, value)| value)
    }

    /// Writes the headers the proxy adds.
    pub fn write(&self, lines: &mut impl HeaderLines) {
        for (name, value) in self.lines() {
            lines.line(name, [value]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(stamp: &RequestStamp) -> String {
        let mut out = Vec::new();
        stamp.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn adds_a_start_and_a_uuid_when_the_client_sent_neither() {
        let stamp = RequestStamp::new(&HeaderMap::new(), 1_700_000_000_123);
        let id = stamp.id().as_str();
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!((parsed.get_version_num(), id.len()), (4, 36));
        assert_eq!(
            written(&stamp),
            format!("x-request-start: t=1700000000123\r\nx-request-id: {id}\r\n")
        );
        assert_eq!(stamp.added(&X_REQUEST_ID), Some(id.as_bytes()));
        assert_eq!(stamp.added(&X_REQUEST_START), Some(&b"t=1700000000123"[..]));
    }

    #[test]
    fn spells_uuids_as_the_uuid_crate_does() {
        let mut samples = vec![0, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210];
        samples.extend((0..1000).map(|_| uuid::Uuid::new_v4().as_u128()));
        samples.extend((0..128).map(|bit| 1 << bit));
        for sample in samples {
            let expected = uuid::Uuid::from_u128(sample).hyphenated().to_string();
            assert_eq!(hyphenated(sample), expected.as_bytes(), "{expected}");
        }
    }

    #[test]
    fn keeps_a_request_id_and_start_the_client_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc"));
        let stamp = RequestStamp::new(&headers, 5);
        assert_eq!(stamp.id().as_str(), "abc");
        assert_eq!(written(&stamp), "x-request-start: t=5\r\n");
        assert_eq!(stamp.added(&X_REQUEST_ID), None);

        headers.insert(&X_REQUEST_START, HeaderValue::from_static("t=1"));
        let stamp = RequestStamp::new(&headers, 5);
        assert_eq!(written(&stamp), "");
        assert_eq!(stamp.added(&X_REQUEST_START), None);
    }
}
