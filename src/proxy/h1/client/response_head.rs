//! Reading a target's response head: the status and headers, and how its body is framed.
//!
//! Framing follows RFC 9112 §6.3 strictly, because a target whose framing we misread would
//! leave the rest of one response to be taken as the next one on the kept-alive connection
//! (response desynchronisation). So: no body for HEAD, 1xx, 204 and 304; a final `chunked`
//! coding wins over `Content-Length` (which is then dropped, and the connection is not
//! reused); several `Content-Length` values must agree; anything else is read until the
//! target closes. Whatever cannot be framed for sure is an error, and the exchange a 502.
//!
//! The fields kept (all but the hop-by-hop ones) are copied out as text (`TargetFields`):
//! no `HeaderMap` is built unless something downstream needs one.

use bytes::{Buf, BytesMut};
use http::{Method, StatusCode};

use crate::proxy::h1::client::target_fields::{FieldCopy, TargetFields};
use crate::proxy::h1::header_block::{self, BlockError, MAX_HEADERS, MAX_HEAD_LEN};
use crate::proxy::h1::headers::{self, KnownField};
use crate::proxy::h1::message_body::{self, Framing};

/// A parsed head: the status and the fields to pass on, how the body is framed, and
/// whether the connection can carry another request once the body is read.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub fields: TargetFields,
    pub framing: Framing,
    pub reusable: bool,
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    #[error("response head larger than {MAX_HEAD_LEN} bytes")]
    TooLarge,
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    #[error("invalid Content-Length in response")]
    InvalidContentLength,
}

impl From<BlockError> for HeadError {
    fn from(error: BlockError) -> Self {
        match error {
            BlockError::TooLarge => HeadError::TooLarge,
            BlockError::Malformed(error) => HeadError::Malformed(error),
        }
    }
}

/// Parses the head at the front of `buf`, removing it. `Ok(None)` means the head is not
/// complete yet. Interim (1xx) responses other than 101 are returned like any other: the
/// caller skips them.
pub fn parse(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, HeadError> {
    let mut uninit = header_block::uninit();
    let mut parsed = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut uninit,
    );
    let Some(head_len) = header_block::head_length(status, buf.len())? else {
        return Ok(None);
    };
    // A complete parse always sets the version and the code.
    let code = parsed.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::InvalidStatus(code))?;
    let http11 = parsed.version.unwrap_or(1) == 1;
    let fields: &[httparse::Header<'_>] = parsed.headers;
    // Each name is recognised once; the passes below look at what it was.
    let mut known = [KnownField::Other; MAX_HEADERS];
    for (field, known) in fields.iter().zip(&mut known) {
        *known = KnownField::of(field.name.as_bytes());
    }
    let count = fields.len();
    let fields = || fields.iter().zip(known.iter().copied());
    // The connection-level headers steer framing and reuse here and go no further (hop-by-hop,
    // RFC 9110 §7.6.1), except the handshake of a 101, which the client needs.
    let hop = HopByHop::of(fields(), status == StatusCode::SWITCHING_PROTOCOLS);
    let lengths = fields()
        .filter(|&(field, known)| known == KnownField::ContentLength && !hop.drops(field, known));
    let stated = lengths.clone().next().is_some();
    let length = agreed_length(lengths.map(|(field, _)| field.value));
    let (framing, reusable) = framing(&hop, stated, length, http11, status, method)?;
    // A length goes on only where it frames the body (not beside a coding) and is sound.
    let length = length
        .ok()
        .flatten()
        .filter(|_| hop.transfer_encoding.is_none());
    let mut copy = FieldCopy::new(&buf[..head_len], count);
    for (field, known) in fields() {
        if hop.drops(field, known) || (known == KnownField::ContentLength && length.is_none()) {
            continue;
        }
        copy.keep(field.name.as_bytes(), field.value, known);
    }
    let mut kept = copy.finish();
    if let Some(length) = length {
        kept.set_length(length);
    }
    buf.advance(head_len);
    Ok(Some(ResponseHead {
        status,
        fields: kept,
        framing,
        reusable,
    }))
}

/// What the hop-by-hop headers of a response said.
struct HopByHop<'h> {
    /// A 101 keeps `Connection` and `Upgrade`: they are its handshake.
    switching: bool,
    /// `Connection: close`.
    close: bool,
    /// The last `Transfer-Encoding` value.
    transfer_encoding: Option<&'h [u8]>,
    /// Other headers that `Connection` names (rare).
    named: Vec<&'h [u8]>,
}

impl<'h> HopByHop<'h> {
    fn of<'a>(
        fields: impl Iterator<Item = (&'a httparse::Header<'h>, KnownField)>,
        switching: bool,
    ) -> Self
    where
        'h: 'a,
    {
        let mut hop = HopByHop {
            switching,
            close: false,
            transfer_encoding: None,
            named: Vec::new(),
        };
        for (field, known) in fields {
            match known {
                KnownField::Connection => {
                    for token in headers::tokens(field.value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            hop.close = true;
                        } else if !headers::is_hop_by_hop(token) {
                            hop.named.push(token);
                        }
                    }
                }
                KnownField::TransferEncoding => hop.transfer_encoding = Some(field.value),
                _ => {}
            }
        }
        hop
    }

    /// Whether `field`, `known` as what its name is, stays behind.
    fn drops(&self, field: &httparse::Header<'_>, known: KnownField) -> bool {
        match known {
            KnownField::Connection | KnownField::Upgrade => !self.switching,
            KnownField::TransferEncoding | KnownField::OtherHopByHop => true,
            _ => {
                !self.named.is_empty()
                    && self
                        .named
                        .iter()
                        .any(|named| named.eq_ignore_ascii_case(field.name.as_bytes()))
            }
        }
    }
}

/// The body's framing (RFC 9112 §6.3) and whether the connection survives the exchange;
/// `stated` says a `Content-Length` was sent, `length` what it came to.
fn framing(
    hop: &HopByHop<'_>,
    stated: bool,
    length: Result<Option<u64>, HeadError>,
    http11: bool,
    status: StatusCode,
    method: &Method,
) -> Result<(Framing, bool), HeadError> {
    let mut reusable = http11 && !hop.close;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, reusable));
    }
    if let Some(coding) = hop.transfer_encoding {
        // Both framings at once is how smuggling starts: trust the coding, drop the length,
        // and never reuse the connection.
        if stated {
            reusable = false;
        }
        let chunked = headers::tokens(coding)
            .last()
            .is_some_and(|last| last.eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked {
            (Framing::Chunked, reusable)
        } else {
            (Framing::UntilClose, false)
        });
    }
    match length? {
        Some(0) => Ok((Framing::Empty, reusable)),
        Some(length) => Ok((Framing::Length(length), reusable)),
        None => Ok((Framing::UntilClose, false)),
    }
}

/// The one length every `Content-Length` value (and list element) states, if any.
fn agreed_length<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Option<u64>, HeadError> {
    let mut length = None;
    for value in values {
        for element in value.split(|&b| b == b',') {
            let parsed = message_body::content_length(element.trim_ascii())
                .ok_or(HeadError::InvalidContentLength)?;
            if length.is_some_and(|known| known != parsed) {
                return Err(HeadError::InvalidContentLength);
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: Method) -> Result<Option<ResponseHead>, HeadError> {
        parse(&mut BytesMut::from(text), &method)
    }

    fn framing_of(text: &str) -> (Framing, bool) {
        let head = head(text, Method::GET).unwrap().unwrap();
        (head.framing, head.reusable)
    }

    /// The fields passed on, as they go to the client.
    fn passed_on(head: &ResponseHead) -> String {
        String::from_utf8_lossy(head.fields.text()).into_owned()
    }

    #[test]
    fn parses_a_head_and_leaves_the_body_in_the_buffer() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 201 Created\r\nx-a: 1\r\nX-A:2\r\ncontent-length: 2\r\n\r\nok",
        );
        let head = parse(&mut buf, &Method::POST).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::CREATED);
        assert_eq!(
            passed_on(&head),
            "x-a: 1\r\nX-A: 2\r\ncontent-length: 2\r\n"
        );
        assert_eq!(head.fields.length(), Some(2));
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.reusable);
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn writes_every_field_with_crlf_whatever_the_target_sent() {
        let head = head("HTTP/1.1 200 OK\nx-a:  1  \nDate: now\n\n", Method::GET);
        let head = head.unwrap().unwrap();
        assert_eq!(passed_on(&head), "x-a: 1\r\nDate: now\r\n");
        assert!(head.fields.is_dated());
    }

    #[test]
    fn waits_for_the_rest_of_a_partial_head() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-le");
        assert!(parse(&mut buf, &Method::GET).unwrap().is_none());
        assert_eq!(buf.len(), 27);
    }

    #[test]
    fn has_no_body_for_head_requests_and_bodiless_statuses() {
        let head = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
            Method::HEAD,
        );
        let head = head.unwrap().unwrap();
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(passed_on(&head), "content-length: 100\r\n");
        assert_eq!(head.fields.length(), Some(100));
        assert_eq!(
            framing_of("HTTP/1.1 204 No Content\r\n\r\n"),
            (Framing::Empty, true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n"),
            (Framing::Empty, true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 100 Continue\r\n\r\n"),
            (Framing::Empty, true)
        );
    }

    #[test]
    fn drops_an_unsound_length_where_there_is_no_body_to_frame() {
        let head = head(
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 3, 4\r\netag: \"x\"\r\n\r\n",
            Method::GET,
        );
        let head = head.unwrap().unwrap();
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(passed_on(&head), "etag: \"x\"\r\n");
        assert_eq!(head.fields.length(), None);
    }

    #[test]
    fn chunked_wins_over_a_length_and_spoils_the_connection() {
        let head = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            Method::GET,
        );
        let head = head.unwrap().unwrap();
        assert_eq!((head.framing, head.reusable), (Framing::Chunked, false));
        assert_eq!(passed_on(&head), "");
        assert_eq!(head.fields.length(), None);
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n"),
            (Framing::Chunked, true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
            (Framing::UntilClose, false)
        );
    }

    #[test]
    fn reads_until_close_without_framing_or_when_the_target_says_so() {
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\n\r\n"),
            (Framing::UntilClose, false)
        );
        assert_eq!(
            framing_of(
                "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 1\r\n\r\n"
            ),
            (Framing::Length(1), false)
        );
        assert_eq!(
            framing_of("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"),
            (Framing::Length(1), false)
        );
    }

    #[test]
    fn accepts_repeated_lengths_that_agree() {
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n"),
            (Framing::Length(3), true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            (Framing::Empty, true)
        );
    }

    #[test]
    fn rejects_lengths_that_disagree_or_are_not_numbers() {
        for length in [
            "3, 4",
            "-1",
            "+3",
            "0x10",
            "",
            "99999999999999999999",
            "1 2",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n");
            assert_eq!(
                head(&text, Method::GET).unwrap_err(),
                HeadError::InvalidContentLength,
                "{length:?}"
            );
        }
        let twice = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(
            head(twice, Method::GET).unwrap_err(),
            HeadError::InvalidContentLength
        );
    }

    #[test]
    fn rejects_malformed_and_oversized_heads() {
        assert!(matches!(
            head("HTTP/1.1 2000 OK\r\n\r\n", Method::GET),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            head("garbage\r\n\r\n", Method::GET),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", Method::GET),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nx-a: 1\r\n\tfolded\r\n\r\n", Method::GET),
            Err(HeadError::Malformed(_))
        ));
        let huge = format!("HTTP/1.1 200 OK\r\nx-big: {}", "a".repeat(MAX_HEAD_LEN));
        assert_eq!(head(&huge, Method::GET).unwrap_err(), HeadError::TooLarge);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(head(&many, Method::GET).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn leaves_hop_by_hop_headers_and_those_connection_names_behind() {
        let text = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n\
                    x-secret: 1\r\nx-app: 1\r\nTransfer-Encoding: chunked\r\nTE: x\r\n\
                    Trailer: y\r\nProxy-Connection: z\r\n\r\n";
        let head = head(text, Method::GET).unwrap().unwrap();
        assert_eq!(passed_on(&head), "x-app: 1\r\n");
        assert_eq!((head.framing, head.reusable), (Framing::Chunked, true));
    }

    #[test]
    fn a_length_named_by_connection_does_not_frame_the_body() {
        let text = "HTTP/1.1 200 OK\r\nConnection: content-length\r\ncontent-length: 2\r\n\r\n";
        let head = head(text, Method::GET).unwrap().unwrap();
        assert_eq!(passed_on(&head), "");
        assert_eq!((head.framing, head.reusable), (Framing::UntilClose, false));
    }

    #[test]
    fn keeps_the_handshake_of_a_switch() {
        let text = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                    Upgrade: websocket\r\nkeep-alive: 5\r\n\r\n";
        let head = head(text, Method::GET).unwrap().unwrap();
        assert_eq!(
            passed_on(&head),
            "Connection: Upgrade\r\nUpgrade: websocket\r\n"
        );
    }

    #[test]
    fn keeps_obs_text_in_values_byte_for_byte() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx-name: caf\xe9\r\n\r\n"[..]);
        let head = parse(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(head.fields.text(), b"x-name: caf\xe9\r\n");
    }
}
