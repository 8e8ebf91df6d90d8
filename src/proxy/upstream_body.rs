//! `UpstreamBody`: a target's response body, read from the connection as the client takes
//! it, which returns the connection to the pool once read to the end.
//!
//! The body is delimited as its head said (`response_head::Framing`). The connection goes
//! back the moment the last byte is read, or at once for a body that is empty from the
//! start (HEAD, 204, 304, `Content-Length: 0`). A body dropped before its end, broken, or
//! followed by bytes nobody asked for closes the connection instead: the unread rest would
//! otherwise greet the next request. A 101 response keeps its connection for the tunnel
//! (`take_tunnel`).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use super::chunked::{ChunkedDecoder, ChunkedError, Decoded};
use super::response_head::Framing;
use super::upstream_connection::{UpstreamConnection, READ_RESERVE};
use super::upstream_pool::Checkin;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    #[error("reading the response body from the target failed: {0}")]
    Read(#[from] io::Error),
    #[error("the target closed the connection before the end of the response body")]
    Truncated,
    #[error("the target's chunked response body is malformed: {0}")]
    Chunked(#[from] ChunkedError),
}

enum State {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

pub struct UpstreamBody {
    state: State,
    /// The connection, until the body is over (or handed to a tunnel).
    connection: Option<UpstreamConnection>,
    /// Where the connection goes when the body is over; `None` if it cannot be reused.
    checkin: Option<Checkin>,
}

/// The target side of an upgraded connection, with any bytes the target sent right after
/// its 101 head.
pub struct TargetTunnel {
    pub stream: TcpStream,
    pub read_ahead: BytesMut,
}

impl UpstreamBody {
    pub fn new(framing: Framing, connection: UpstreamConnection, checkin: Option<Checkin>) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => State::UntilClose,
        };
        let mut body = UpstreamBody {
            state,
            connection: Some(connection),
            checkin,
        };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        body
    }

    /// The body of a 101 response: none, and the connection kept for the tunnel.
    pub fn upgraded(connection: UpstreamConnection) -> Self {
        UpstreamBody {
            state: State::Done,
            connection: Some(connection),
            checkin: None,
        }
    }

    /// The upgraded connection of a 101 response.
    pub fn take_tunnel(&mut self) -> Option<TargetTunnel> {
        self.connection.take().map(|connection| TargetTunnel {
            stream: connection.stream,
            read_ahead: connection.buf,
        })
    }

    /// The body is over: the connection goes back to the pool if it can carry another
    /// exchange and nothing but this body came on it.
    fn finish(&mut self) {
        self.state = State::Done;
        match (self.checkin.take(), self.connection.take()) {
            (Some(checkin), Some(connection)) if connection.buf.is_empty() => {
                checkin.give_back(connection)
            }
            _ => {}
        }
    }

    /// The body broke: its connection is closed.
    fn fail(
        &mut self,
        error: UpstreamBodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        self.state = State::Done;
        self.connection = None;
        self.checkin = None;
        Poll::Ready(Some(Err(error)))
    }
}

/// Reads more from the target into the connection's buffer; `Ok(0)` at its close.
fn poll_fill(connection: &mut UpstreamConnection, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    connection.buf.reserve(READ_RESERVE);
    tokio_util::io::poll_read_buf(Pin::new(&mut connection.stream), cx, &mut connection.buf)
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(remaining) => {
                    if !connection.buf.is_empty() {
                        let take = connection
                            .buf
                            .len()
                            .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                        let data = connection.buf.split_to(take).freeze();
                        *remaining -= take as u64;
                        if *remaining == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunked(decoder) => match decoder.decode(&mut connection.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(error) => return this.fail(error.into()),
                },
                State::UntilClose => {
                    if !connection.buf.is_empty() {
                        let data = connection.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(poll_fill(connection, cx)) {
                Ok(0) if matches!(this.state, State::UntilClose) => {
                    this.state = State::Done;
                    this.connection = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(UpstreamBodyError::Truncated),
                Ok(_) => {}
                Err(error) => return this.fail(error.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(remaining) => SizeHint::with_exact(remaining),
            State::Chunked(_) | State::UntilClose => SizeHint::default(),
        }
    }
}
