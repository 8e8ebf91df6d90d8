//! `UpstreamBody`: a target's response body, read from the connection as the client takes
//! it, which returns the connection to the pool once read to the end.
//!
//! The body is delimited as its head said (`message_body::Framing`). The connection goes
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

use crate::proxy::h1::chunked::ChunkedError;
use crate::proxy::h1::client::upstream_connection::{UpstreamConnection, READ_RESERVE};
use crate::proxy::h1::client::upstream_pool::Checkin;
use crate::proxy::h1::message_body::{BodyState, Framing, Step};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    #[error("reading the response body from the target failed: {0}")]
    Read(#[from] io::Error),
    #[error("the target closed the connection before the end of the response body")]
    Truncated,
    #[error("the target's chunked response body is malformed: {0}")]
    Chunked(#[from] ChunkedError),
}

pub struct UpstreamBody {
    state: BodyState,
    /// The connection, until the body is over (or handed to a tunnel).
    connection: Option<Box<UpstreamConnection>>,
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
    pub fn new(
        framing: Framing,
        connection: Box<UpstreamConnection>,
        checkin: Option<Checkin>,
    ) -> Self {
        let mut body = UpstreamBody {
            state: BodyState::new(framing),
            connection: Some(connection),
            checkin,
        };
        if body.state.is_done() {
            body.finish();
        }
        body
    }

    /// The body of a 101 response: none, and the connection kept for the tunnel.
    pub fn upgraded(connection: Box<UpstreamConnection>) -> Self {
        UpstreamBody {
            state: BodyState::Done,
            connection: Some(connection),
            checkin: None,
        }
    }

    /// Whether the rest of the body has been read off the connection already, so taking it
    /// asks nothing more of the target (a small response arrives with its head).
    pub fn is_read_whole(&self) -> bool {
        match (&self.state, &self.connection) {
            (BodyState::Done, _) => true,
            (BodyState::Length(remaining), Some(connection)) => {
                connection.buf.len() as u64 >= *remaining
            }
            _ => false,
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
        self.state = BodyState::Done;
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
        self.state = BodyState::Done;
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
            match this.state.step(&mut connection.buf) {
                Ok(Step::Data(data)) => {
                    if this.state.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(error) => return this.fail(error.into()),
            }
            match ready!(poll_fill(connection, cx)) {
                Ok(0) if this.state.closed() => {
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
        self.state.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.state.size_hint()
    }
}
