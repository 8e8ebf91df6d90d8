//! `RelayBody`: a message body on its way between client and target, either streamed as
//! the peer sends it or replayed from a spill buffer.
//!
//! One type serves both directions, so the upstream client and `ProxyBody` each take a
//! single body type whether buffering is on or off. The streamed case is a thin wrapper
//! around the peer's body, which keeps the unbuffered path as cheap as before. Its
//! error says which side failed, so a broken client body can be told from a broken target.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::proxy::body::request_body::{RequestBody, RequestBodyError};
use crate::proxy::body::spill_buffer::SpilledBody;
use crate::proxy::h1::client::upstream_body::UpstreamBody;

/// `B` is the streamed body: the client's `RequestBody` on the way up, the target's
/// `UpstreamBody` on the way down. A buffered body is boxed: it is the rare case, several
/// times the size of a streamed one, and the body rides in every future and response on the
/// request's path, each move of it a copy of the largest variant.
pub enum RelayBody<B = RequestBody> {
    Streamed(B),
    Buffered(Box<SpilledBody>),
}

/// A response body as it comes back from a target.
pub type ResponseBody = RelayBody<UpstreamBody>;

/// `E` is the streamed body's error: `RequestBodyError` for the client's body, the upstream body's for
/// the target's.
#[derive(Debug, thiserror::Error)]
pub enum RelayError<E = RequestBodyError> {
    /// The peer that sends this body broke it off or sent it malformed.
    #[error("reading the body from its sender failed")]
    Stream(#[source] E),
    /// The spill file could not be read back.
    #[error("reading the buffered body failed")]
    Spill(#[source] io::Error),
}

impl<B> Body for RelayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = RelayError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            RelayBody::Streamed(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(RelayError::Stream))),
            RelayBody::Buffered(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(RelayError::Spill))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RelayBody::Streamed(body) => body.is_end_stream(),
            RelayBody::Buffered(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RelayBody::Streamed(body) => body.size_hint(),
            RelayBody::Buffered(body) => body.size_hint(),
        }
    }
}
