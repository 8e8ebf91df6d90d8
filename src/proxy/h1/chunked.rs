//! `ChunkedDecoder`: reads one chunked response body (RFC 9112 §7.1) off a target's
//! connection, handing its data out without copying and leaving the bytes after it in place
//! for the next response.
//!
//! Where a body ends decides where the next response starts, so a framing error read
//! leniently here is a response desynchronised later. The decoder is therefore strict: lines
//! end in CRLF and nothing else, sizes and extensions follow the grammar, and anything it
//! does not recognise fails the body, which costs the connection rather than the next
//! client's response. It holds no more than a few counters: framing is consumed as it is
//! parsed, and a size line or trailer section longer than its limit is an error instead of
//! buffering without end.
//! Chunk extensions and trailer fields are checked and dropped, never forwarded: nothing we
//! serve needs them, and passing them on would make the client trust framing we did not
//! produce. Reading the socket and what a failure means for the connection are the codec's.

use bytes::{Buf, Bytes, BytesMut};

/// Longest size line, extensions and CRLF included. Real targets send a few hex digits;
/// the room is for padded sizes and the odd extension.
const MAX_SIZE_LINE: usize = 4 * 1024;

/// Largest trailer section, field lines and the empty line that closes it included.
const MAX_TRAILERS: usize = 16 * 1024;

/// Incremental decoder of one chunked body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being read on a size line, then the bytes of the chunk still to come.
    size: u64,
    /// Bytes of the current size line consumed so far.
    line_len: usize,
    /// Bytes of the trailer section consumed so far.
    trailer_len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body data split off the front of the buffer without copying; never empty.
    Data(Bytes),
    /// The buffer ends inside the framing (or is empty): read more into it and call again.
    NeedMore,
    /// The last chunk and the trailer section were consumed; whatever remains in the buffer
    /// belongs to the next message.
    End,
}

/// Why a body's framing was refused. Every one leaves the connection unusable: where the
/// next response starts is no longer known.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum ChunkedError {
    #[error("invalid chunk size")]
    InvalidChunkSize,
    #[error("chunk size too large")]
    ChunkSizeTooLarge,
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    #[error("chunk size line longer than {MAX_SIZE_LINE} bytes")]
    LineTooLong,
    #[error("bare CR or LF in chunk framing")]
    InvalidLineEnding,
    #[error("missing CRLF after chunk data")]
    MissingDataCrlf,
    #[error("invalid trailer field")]
    InvalidTrailer,
    #[error("trailer section larger than {MAX_TRAILERS} bytes")]
    TrailersTooLarge,
}

/// Where the decoder is in the body. The size line states follow RFC 9112's grammar:
/// `chunk-size [ BWS ";" BWS name [ BWS "=" BWS value ] ]... CRLF`, with whitespace also
/// allowed before the CRLF, as padded sizes have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A size line's first byte: a hex digit.
    SizeStart,
    /// After a digit: more digits, whitespace, an extension or the end of the line.
    Size,
    /// After whitespace or a whole extension: another extension or the end of the line.
    SizeBws,
    /// After `;`: the extension's name.
    ExtNameStart,
    ExtName,
    /// Whitespace after a name: its `=`, another extension or the end of the line.
    ExtNameBws,
    /// After `=`: a token or a quoted string.
    ExtValueStart,
    ExtValueToken,
    ExtValueQuoted,
    /// After a backslash in a quoted string.
    ExtValueEscape,
    /// The size line's CR was read.
    SizeLf,
    /// Inside the chunk's data; `size` bytes of it are still to come.
    Data,
    DataCr,
    DataLf,
    /// The start of a trailer field line, or of the empty line that ends the body.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// The CR of the empty line ending the body was read.
    EndLf,
    Done,
    /// The body was refused; it stays refused.
    Failed(ChunkedError),
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            line_len: 0,
            trailer_len: 0,
        }
    }

    /// Decodes from the front of `buf`, removing what it consumed (framing bytes are consumed
    /// as soon as they are parsed, so state persists across calls and `buf` never has to hold
    /// more than one line of framing).
    ///
    /// `NeedMore` always leaves `buf` empty. After an error the same error is returned again
    /// and what is left in `buf` means nothing.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        loop {
            match self.state {
                State::Failed(error) => return Err(error),
                State::Done => return Ok(Decoded::End),
                State::Data => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(self.size).map_or(buf.len(), |n| n.min(buf.len()));
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                _ => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let consumed = self.parse_framing(buf);
                    buf.advance(consumed);
                }
            }
        }
    }

    /// Whether `End` has been returned.
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Parses framing from the front of `framing` until data, the end of the body or a
    /// failure; returns how many bytes it consumed, which never includes a refused one.
    fn parse_framing(&mut self, framing: &[u8]) -> usize {
        let mut consumed = 0;
        for &byte in framing {
            if let Err(error) = self.step(byte) {
                self.state = State::Failed(error);
                break;
            }
            consumed += 1;
            if matches!(self.state, State::Data | State::Done) {
                break;
            }
        }
        consumed
    }

    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        use ChunkedError::*;

        if self.state.is_size_line() {
            self.line_len += 1;
            if self.line_len > MAX_SIZE_LINE {
                return Err(LineTooLong);
            }
            if byte == b'\n' && self.state != State::SizeLf {
                return Err(InvalidLineEnding);
            }
        } else if self.state.is_trailer() {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILERS {
                return Err(TrailersTooLarge);
            }
        }

        self.state = match (self.state, byte) {
            (State::SizeStart, _) => {
                self.size = u64::from(hex_value(byte).ok_or(InvalidChunkSize)?);
                State::Size
            }
            (State::Size, _) if hex_value(byte).is_some() => {
                // Overflows only past 16 significant digits; leading zeros cost line length.
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(u64::from(hex_value(byte)?)))
                    .ok_or(ChunkSizeTooLarge)?;
                State::Size
            }
            (State::Size, b';') => State::ExtNameStart,
            (State::Size, b'\r') => State::SizeLf,
            (State::Size, _) if is_whitespace(byte) => State::SizeBws,
            (State::Size, _) => return Err(InvalidChunkSize),

            (State::SizeBws | State::ExtNameBws, _) if is_whitespace(byte) => self.state,
            (State::SizeBws | State::ExtNameBws, b';') => State::ExtNameStart,
            (State::SizeBws | State::ExtNameBws, b'\r') => State::SizeLf,
            (State::ExtNameBws, b'=') => State::ExtValueStart,

            (State::ExtNameStart, _) if is_whitespace(byte) => State::ExtNameStart,
            (State::ExtNameStart | State::ExtName, _) if is_tchar(byte) => State::ExtName,
            (State::ExtName, b'=') => State::ExtValueStart,
            (State::ExtName, b';') => State::ExtNameStart,
            (State::ExtName, b'\r') => State::SizeLf,
            (State::ExtName, _) if is_whitespace(byte) => State::ExtNameBws,

            (State::ExtValueStart, _) if is_whitespace(byte) => State::ExtValueStart,
            (State::ExtValueStart, b'"') => State::ExtValueQuoted,
            (State::ExtValueStart | State::ExtValueToken, _) if is_tchar(byte) => {
                State::ExtValueToken
            }
            (State::ExtValueToken, b';') => State::ExtNameStart,
            (State::ExtValueToken, b'\r') => State::SizeLf,
            (State::ExtValueToken, _) if is_whitespace(byte) => State::SizeBws,

            (State::ExtValueQuoted, b'"') => State::SizeBws,
            (State::ExtValueQuoted, b'\\') => State::ExtValueEscape,
            (State::ExtValueQuoted, _) if is_field_text(byte) => State::ExtValueQuoted,
            (State::ExtValueEscape, _) if is_field_text(byte) => State::ExtValueQuoted,

            (State::SizeLf, b'\n') if self.size == 0 => {
                self.trailer_len = 0;
                State::TrailerStart
            }
            (State::SizeLf, b'\n') => State::Data,
            (State::SizeLf, _) => return Err(InvalidLineEnding),

            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.line_len = 0;
                State::SizeStart
            }
            (State::DataCr | State::DataLf, _) => return Err(MissingDataCrlf),

            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::TrailerName, _) if is_tchar(byte) => State::TrailerName,
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, _) if is_field_text(byte) => State::TrailerValue,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            (State::TrailerLf | State::EndLf, _) => return Err(InvalidLineEnding),
            (State::TrailerStart | State::TrailerName | State::TrailerValue, b'\n') => {
                return Err(InvalidLineEnding)
            }
            // Includes obsolete line folding, which a trailer line starting with whitespace is.
            (State::TrailerStart | State::TrailerName | State::TrailerValue, _) => {
                return Err(InvalidTrailer)
            }

            // Whatever else a size line holds past its digits is a broken extension; an LF
            // was refused above.
            (_, _) if self.state.is_size_line() => return Err(InvalidChunkExtension),
            // Data, Done and Failed are never stepped through: `decode` handles them.
            (state, _) => state,
        };
        Ok(())
    }
}

impl State {
    fn is_size_line(self) -> bool {
        matches!(
            self,
            State::SizeStart
                | State::Size
                | State::SizeBws
                | State::ExtNameStart
                | State::ExtName
                | State::ExtNameBws
                | State::ExtValueStart
                | State::ExtValueToken
                | State::ExtValueQuoted
                | State::ExtValueEscape
                | State::SizeLf
        )
    }

    fn is_trailer(self) -> bool {
        matches!(
            self,
            State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::EndLf
        )
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn is_whitespace(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// RFC 9110's `tchar`: what names and unquoted values are made of.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Visible characters, whitespace and obs-text: a field value or quoted string's content,
/// which never holds CR, LF or other controls.
fn is_field_text(byte: u8) -> bool {
    matches!(byte, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` whole and collects what the decoder makes of it: the body, and the
    /// outcome that ended decoding.
    fn decode_all(input: &[u8]) -> (Vec<u8>, Result<Decoded, ChunkedError>, BytesMut) {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(input);
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
                outcome => return (body, outcome, buf),
            }
        }
    }

    fn decodes_to(input: &[u8], expected: &[u8]) {
        let (body, outcome, buf) = decode_all(input);
        assert_eq!(
            outcome,
            Ok(Decoded::End),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(body, expected);
        assert!(buf.is_empty());
    }

    fn fails_with(input: &[u8], error: ChunkedError) {
        let (_, outcome, _) = decode_all(input);
        assert_eq!(outcome, Err(error), "{:?}", String::from_utf8_lossy(input));
    }

    #[test]
    fn decodes_a_simple_body() {
        decodes_to(b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n", b"hello, world");
        decodes_to(b"0\r\n\r\n", b"");
    }

    #[test]
    fn decodes_upper_and_lower_case_hex() {
        let body = vec![b'x'; 0xab];
        for size in ["ab", "AB", "aB"] {
            let mut input = format!("{size}\r\n").into_bytes();
            input.extend_from_slice(&body);
            input.extend_from_slice(b"\r\n0\r\n\r\n");
            decodes_to(&input, &body);
        }
    }

    #[test]
    fn decodes_sizes_with_leading_zeros() {
        decodes_to(b"0005\r\nhello\r\n0000000000000000000000\r\n\r\n", b"hello");
    }

    #[test]
    fn accepts_the_largest_size_a_u64_holds() {
        let (body, outcome, _) = decode_all(b"0ffffffffffffffff\r\nabc");
        assert_eq!(
            (body.as_slice(), outcome),
            (&b"abc"[..], Ok(Decoded::NeedMore))
        );
    }

    #[test]
    fn ignores_chunk_extensions() {
        decodes_to(
            b"5;name\r\nhello\r\n1 ; a=b ;c = \"q \\\" \\\\ d\"\t;e\r\n!\r\n0;last=yes \r\n\r\n",
            b"hello!",
        );
        decodes_to(b"5 \t\r\nhello\r\n0\r\n\r\n", b"hello");
    }

    #[test]
    fn discards_trailers() {
        decodes_to(
            b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Empty:\r\nx-obs: caf\xc3\xa9\r\n\r\n",
            b"hello",
        );
    }

    #[test]
    fn leaves_the_next_message_in_the_buffer() {
        let (body, outcome, buf) = decode_all(b"2\r\nhi\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n");
        assert_eq!((body.as_slice(), outcome), (&b"hi"[..], Ok(Decoded::End)));
        assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n");
    }

    #[test]
    fn returns_end_again_without_consuming() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"0\r\n\r\nnext"[..]);
        assert!(!decoder.is_done());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
        assert!(decoder.is_done());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
        assert_eq!(&buf[..], b"next");
    }

    #[test]
    fn returns_a_partial_chunk_before_the_rest_arrives() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"a\r\nhello"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from("hello")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"world\r\n0\r\n\r\n");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from("world")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
    }

    #[test]
    fn needs_more_when_the_last_chunk_lacks_its_final_crlf() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"0\r\n"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"\r");
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        assert!(!decoder.is_done());
        buf.extend_from_slice(b"\n");
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
    }

    #[test]
    fn rejects_invalid_chunk_sizes() {
        for input in [
            &b"\r\n"[..],
            b";a\r\n",
            b" 5\r\n",
            b"+5\r\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"g\r\n",
            b"5g\r\n",
        ] {
            fails_with(input, ChunkedError::InvalidChunkSize);
        }
    }

    #[test]
    fn rejects_sizes_past_sixteen_hex_digits() {
        fails_with(b"10000000000000000\r\n", ChunkedError::ChunkSizeTooLarge);
        fails_with(b"00fffffffffffffffff\r\n", ChunkedError::ChunkSizeTooLarge);
    }

    #[test]
    fn rejects_malformed_extensions() {
        for input in [
            &b"5;\r\n"[..],
            b"5; \r\n",
            b"5;=v\r\n",
            b"5;a=\r\n",
            b"5;a b\r\n",
            b"5 x\r\n",
            b"5;a=\"b\"c\r\n",
            b"5;a=\"b\r\n",
            b"5;a=b\"c\"\r\n",
            b"5;a=\"\x00\"\r\n",
            b"5;a@b\r\n",
        ] {
            fails_with(input, ChunkedError::InvalidChunkExtension);
        }
    }

    #[test]
    fn rejects_bare_line_endings() {
        for input in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\rhello\r\n0\r\n\r\n",
            b"5;a=\"\n\"\r\n",
            b"5;a\n\r\n",
            b"0\r\nA: b\n\r\n",
            b"0\r\nA: b\rc\r\n\r\n",
            b"0\r\n\n",
            b"0\r\n\rx",
            b"0\n\r\n",
        ] {
            fails_with(input, ChunkedError::InvalidLineEnding);
        }
    }

    #[test]
    fn rejects_chunk_data_not_followed_by_crlf() {
        for input in [
            &b"5\r\nhello!\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r0\r\n\r\n",
            b"5\r\nhello0\r\n\r\n",
        ] {
            fails_with(input, ChunkedError::MissingDataCrlf);
        }
    }

    #[test]
    fn rejects_malformed_trailers() {
        for input in [
            &b"0\r\n folded\r\n\r\n"[..],
            b"0\r\nA: b\r\n\tfolded\r\n\r\n",
            b"0\r\n: b\r\n\r\n",
            b"0\r\nno-colon\r\n\r\n",
            b"0\r\nA b: c\r\n\r\n",
            b"0\r\nA: \x00\r\n\r\n",
        ] {
            fails_with(input, ChunkedError::InvalidTrailer);
        }
    }

    #[test]
    fn accepts_a_size_line_at_its_limit_and_rejects_one_past_it() {
        let line = |len: usize| {
            let mut line = b"1;".to_vec();
            line.resize(len - 2, b'a');
            line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
            line
        };
        decodes_to(&line(MAX_SIZE_LINE), b"x");
        fails_with(&line(MAX_SIZE_LINE + 1), ChunkedError::LineTooLong);
    }

    #[test]
    fn rejects_an_endless_size_line_without_buffering_it() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"1;"[..]);
        let mut fed = buf.len();
        while fed < MAX_SIZE_LINE {
            assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
            assert!(buf.is_empty());
            buf.extend_from_slice(&[b'a'; 100]);
            fed += 100;
        }
        assert_eq!(decoder.decode(&mut buf), Err(ChunkedError::LineTooLong));
    }

    #[test]
    fn rejects_a_trailer_section_past_its_limit() {
        let trailers = |len: usize| {
            let mut input = b"0\r\nX: ".to_vec();
            input.resize(3 + len - 4, b'v');
            input.extend_from_slice(b"\r\n\r\n");
            input
        };
        decodes_to(&trailers(MAX_TRAILERS), b"");
        fails_with(&trailers(MAX_TRAILERS + 1), ChunkedError::TrailersTooLarge);
    }

    #[test]
    fn keeps_failing_after_an_error() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"z\r\n0\r\n\r\n"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ChunkedError::InvalidChunkSize)
        );
        let mut fresh = BytesMut::from(&b"0\r\n\r\n"[..]);
        assert_eq!(
            decoder.decode(&mut fresh),
            Err(ChunkedError::InvalidChunkSize)
        );
        assert!(!decoder.is_done());
    }

    /// A chunk extension as a target might send it, always valid.
    fn extension() -> impl Strategy<Value = String> {
        let token = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,8}";
        let quoted = r#""([ \t!#-\[\]-~]|\\[ -~]){0,8}""#;
        let ws = "[ \t]{0,2}";
        (
            ws,
            token,
            ws,
            prop::option::of((ws, ws, prop_oneof![token, quoted])),
        )
            .prop_map(|(before, name, after, value)| match value {
                Some((ws1, ws2, value)) => format!("{before};{after}{name}{ws1}={ws2}{value}"),
                None => format!("{before};{after}{name}"),
            })
    }

    fn size_line(size: usize, zeros: usize, upper: bool, extensions: &[String]) -> Vec<u8> {
        let digits = if upper {
            format!("{size:X}")
        } else {
            format!("{size:x}")
        };
        format!("{}{digits}{}\r\n", "0".repeat(zeros), extensions.concat()).into_bytes()
    }

    #[derive(Debug, Clone)]
    struct Encoding {
        body: Vec<u8>,
        /// Sizes, leading zeros, case and extensions of each chunk, the last one's included.
        chunks: Vec<(usize, usize, bool, Vec<String>)>,
        trailers: Vec<(String, String)>,
        suffix: Vec<u8>,
        pieces: Vec<usize>,
    }

    fn encoding() -> impl Strategy<Value = Encoding> {
        let chunk = || {
            (
                1usize..200,
                0usize..3,
                any::<bool>(),
                prop::collection::vec(extension(), 0..3),
            )
        };
        (
            prop::collection::vec(any::<u8>(), 0..1500),
            prop::collection::vec(chunk(), 1..20),
            chunk(),
            prop::collection::vec(("[A-Za-z0-9-]{1,10}", "[ -~\t]{0,20}"), 0..4),
            prop::collection::vec(any::<u8>(), 0..20),
            prop::collection::vec(1usize..64, 1..40),
        )
            .prop_map(
                |(body, sizes, (_, zeros, upper, ext), trailers, suffix, pieces)| {
                    // Stretch the chosen sizes over the body; the cycle ends at the body's end.
                    let mut chunks = Vec::new();
                    let mut left = body.len();
                    for (size, zeros, upper, ext) in sizes.iter().cycle().cloned() {
                        if left == 0 {
                            break;
                        }
                        let size = size.min(left);
                        left -= size;
                        chunks.push((size, zeros, upper, ext));
                    }
                    chunks.push((0, zeros, upper, ext));
                    Encoding {
                        body,
                        chunks,
                        trailers,
                        suffix,
                        pieces,
                    }
                },
            )
    }

    fn encode(encoding: &Encoding) -> Vec<u8> {
        let mut out = Vec::new();
        let mut body = encoding.body.as_slice();
        for (size, zeros, upper, extensions) in &encoding.chunks {
            out.extend(size_line(*size, *zeros, *upper, extensions));
            if *size > 0 {
                let (data, rest) = body.split_at(*size);
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
                body = rest;
            }
        }
        for (name, value) in &encoding.trailers {
            out.extend(format!("{name}: {value}\r\n").into_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&encoding.suffix);
        out
    }

    /// What feeding `input` in pieces came to.
    struct Fed {
        body: Vec<u8>,
        outcome: Result<Decoded, ChunkedError>,
        /// The buffer at the end plus whatever was never fed.
        rest: Vec<u8>,
    }

    /// Feeds `input` in pieces cut by `pieces` (cycled), decoding after each, until the
    /// decoder ends, fails, or the input runs out. Checks on the way that framing is consumed
    /// at once and that data is never empty.
    fn feed(input: &[u8], pieces: &[usize]) -> Fed {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut input = input;
        let mut pieces = pieces.iter().cycle();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => {
                    assert!(!data.is_empty());
                    body.extend_from_slice(&data);
                }
                Ok(Decoded::NeedMore) => {
                    assert!(buf.is_empty(), "NeedMore left {} bytes", buf.len());
                    assert!(!decoder.is_done());
                    let piece = pieces.next().copied().unwrap_or(1).min(input.len());
                    if piece == 0 {
                        let outcome = Ok(Decoded::NeedMore);
                        return Fed {
                            body,
                            outcome,
                            rest: Vec::new(),
                        };
                    }
                    let (now, later) = input.split_at(piece);
                    buf.extend_from_slice(now);
                    input = later;
                }
                outcome => {
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(input);
                    if outcome == Ok(Decoded::End) {
                        assert!(decoder.is_done());
                        let held = buf.len();
                        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
                        assert_eq!(buf.len(), held);
                    } else {
                        assert_eq!(decoder.decode(&mut buf), outcome);
                    }
                    return Fed {
                        body,
                        outcome,
                        rest,
                    };
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decodes_any_encoded_body_however_it_is_split(encoding in encoding()) {
            let fed = feed(&encode(&encoding), &encoding.pieces);
            prop_assert_eq!(fed.outcome, Ok(Decoded::End));
            prop_assert_eq!(fed.body, encoding.body);
            prop_assert_eq!(fed.rest, encoding.suffix);
        }

        #[test]
        fn decodes_any_encoded_body_fed_byte_by_byte(encoding in encoding()) {
            let fed = feed(&encode(&encoding), &[1]);
            prop_assert_eq!(fed.outcome, Ok(Decoded::End));
            prop_assert_eq!(fed.body, encoding.body);
            prop_assert_eq!(fed.rest, encoding.suffix);
        }

        #[test]
        fn survives_arbitrary_bytes(
            input in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..512),
                // Mostly framing characters, to get past the first line more often.
                prop::collection::vec(
                    prop::sample::select(b"0123456789abcdefABCDEFxX;= \t\"\\:\r\n\r\n\x00\xff".to_vec()),
                    0..512,
                ),
            ],
            pieces in prop::collection::vec(1usize..32, 1..16),
        ) {
            // `feed` asserts the invariants; any outcome is fine as long as it is reached.
            let fed = feed(&input, &pieces);
            prop_assert!(fed.body.len() <= input.len());
        }

        #[test]
        fn survives_a_damaged_encoding(
            encoding in encoding(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut input = encode(&encoding);
            let at = at.index(input.len());
            input[at] = byte;
            let fed = feed(&input, &encoding.pieces);
            // A damaged size can still end cleanly (by spanning the next chunk exactly), so
            // only `feed`'s invariants hold for any damage.
            prop_assert!(fed.body.len() <= input.len());
        }

        #[test]
        fn refuses_endless_framing_once_past_its_limit(
            (prefix, filler, limit, error) in prop_oneof![
                Just((&b""[..], b'0', MAX_SIZE_LINE, ChunkedError::LineTooLong)),
                Just((&b"1"[..], b' ', MAX_SIZE_LINE, ChunkedError::LineTooLong)),
                Just((&b"1;"[..], b'n', MAX_SIZE_LINE, ChunkedError::LineTooLong)),
                Just((&b"1;n=\""[..], b'v', MAX_SIZE_LINE, ChunkedError::LineTooLong)),
                Just((&b"0\r\nX:"[..], b'v', MAX_TRAILERS + 3, ChunkedError::TrailersTooLarge)),
                Just((&b"0\r\n"[..], b'X', MAX_TRAILERS + 3, ChunkedError::TrailersTooLarge)),
            ],
            pieces in prop::collection::vec(1usize..512, 1..16),
        ) {
            let mut input = prefix.to_vec();
            input.resize(limit + 600, filler);
            let fed = feed(&input, &pieces);
            prop_assert_eq!(fed.outcome, Err(error));
            // Nothing past the limit was consumed: the byte that crossed it is the first of
            // what was left.
            prop_assert_eq!(fed.rest.len(), input.len() - limit);
        }
    }
}
