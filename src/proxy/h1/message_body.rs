//! How an HTTP/1.1 message body is delimited, and taking one off the front of a read buffer.
//!
//! Requests from clients and responses from targets are framed by the same rules (RFC 9112
//! §6), and where one body ends decides where the next message on the connection starts.
//! So both directions share this one state machine: it hands out body data without copying
//! and leaves whatever follows the body in the buffer. Reading the socket, and what a
//! failure costs the connection, stay with each side.

use bytes::{Bytes, BytesMut};
use http_body::SizeHint;

use crate::proxy::h1::chunked::{ChunkedDecoder, ChunkedError, Decoded};

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the peer closes the connection (responses only).
    UntilClose,
}

/// Where in its body a message is.
#[derive(Debug)]
pub enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

/// What the buffer gave.
pub enum Step {
    Data(Bytes),
    /// The body is over; the rest of the buffer is the next message's.
    End,
    /// Read more into the buffer and step again.
    NeedMore,
}

impl BodyState {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyState::Done,
            Framing::Length(length) => BodyState::Length(length),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => BodyState::UntilClose,
        }
    }

    /// Takes the next piece of the body off the front of `buf`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkedError> {
        let step = match self {
            BodyState::Done => Step::End,
            BodyState::Length(_) | BodyState::UntilClose if buf.is_empty() => Step::NeedMore,
            BodyState::Length(remaining) => {
                let take = usize::try_from(*remaining).map_or(buf.len(), |n| n.min(buf.len()));
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = BodyState::Done;
                }
                Step::Data(buf.split_to(take).freeze())
            }
            BodyState::UntilClose => Step::Data(buf.split().freeze()),
            BodyState::Chunked(decoder) => match decoder.decode(buf)? {
                Decoded::Data(data) => Step::Data(data),
                Decoded::End => {
                    *self = BodyState::Done;
                    Step::End
                }
                Decoded::NeedMore => Step::NeedMore,
            },
        };
        Ok(step)
    }

    /// The peer closed the connection: the end of an `UntilClose` body, and a truncated
    /// body otherwise. Says whether the body ended properly.
    pub fn closed(&mut self) -> bool {
        let ended = matches!(self, BodyState::UntilClose | BodyState::Done);
        *self = BodyState::Done;
        ended
    }

    pub fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }

    pub fn size_hint(&self) -> SizeHint {
        match self {
            BodyState::Done => SizeHint::with_exact(0),
            BodyState::Length(remaining) => SizeHint::with_exact(*remaining),
            BodyState::Chunked(_) | BodyState::UntilClose => SizeHint::default(),
        }
    }
}

/// A `Content-Length` value (or one element of a list of them): plain digits only, no sign
/// or space, and few enough to fit a `u64`. Both heads we read are held to this; anything
/// looser is how two readers of one message come to disagree on its length.
pub fn content_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &digit| n * 10 + u64::from(digit - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_length_of_plain_digits_only() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(
            content_length(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for refused in [
            &b""[..],
            b"-1",
            b"+3",
            b"0x10",
            b" 3",
            b"1 2",
            b"99999999999999999999",
        ] {
            assert_eq!(content_length(refused), None, "{refused:?}");
        }
    }

    fn data(step: Step) -> Bytes {
        match step {
            Step::Data(data) => data,
            Step::End => panic!("end"),
            Step::NeedMore => panic!("need more"),
        }
    }

    #[test]
    fn takes_a_length_and_leaves_the_next_message() {
        let mut state = BodyState::new(Framing::Length(5));
        let mut buf = BytesMut::from("helloGET /");
        assert_eq!(data(state.step(&mut buf).unwrap()), "hello");
        assert!(state.is_done());
        assert_eq!(&buf[..], b"GET /");
    }

    #[test]
    fn waits_for_more_of_a_length() {
        let mut state = BodyState::new(Framing::Length(5));
        let mut buf = BytesMut::from("hel");
        assert_eq!(data(state.step(&mut buf).unwrap()), "hel");
        assert!(matches!(state.step(&mut buf).unwrap(), Step::NeedMore));
        assert_eq!(state.size_hint().exact(), Some(2));
        assert!(!state.closed(), "a close before the length is a truncation");
    }

    #[test]
    fn decodes_chunks_and_leaves_the_next_message() {
        let mut state = BodyState::new(Framing::Chunked);
        let mut buf = BytesMut::from("5\r\nhello\r\n0\r\n\r\nnext");
        assert_eq!(data(state.step(&mut buf).unwrap()), "hello");
        assert!(matches!(state.step(&mut buf).unwrap(), Step::End));
        assert_eq!(&buf[..], b"next");
    }

    #[test]
    fn ends_a_close_delimited_body_at_the_close() {
        let mut state = BodyState::new(Framing::UntilClose);
        let mut buf = BytesMut::from("all");
        assert_eq!(data(state.step(&mut buf).unwrap()), "all");
        assert!(state.closed());
        assert!(state.is_done());
    }

    #[test]
    fn has_no_body_for_empty_or_zero_length() {
        assert!(BodyState::new(Framing::Empty).is_done());
        assert!(BodyState::new(Framing::Length(0)).is_done());
    }
}
