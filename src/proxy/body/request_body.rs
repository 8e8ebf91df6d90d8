//! `RequestBody`: a client's request body, from whichever server read the request.
//!
//! Plain HTTP/1.1 is served by our own server (`client`), HTTPS (HTTP/2 and HTTP/1.1) by
//! hyper's; the pipeline after them is one, so their bodies meet in this enum. Its error
//! tells a malformed body (the client's fault: 400) from one the client stopped sending.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::proxy::h1::server::{ClientBody, ClientBodyError};

pub enum RequestBody {
    Hyper(Incoming),
    Plain(ClientBody),
}

#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error(transparent)]
    Hyper(hyper::Error),
    #[error(transparent)]
    Plain(ClientBodyError),
}

impl RequestBodyError {
    /// The client sent a body that breaks its framing, rather than stopping sending it.
    /// hyper reports bad chunk framing as invalid data or input somewhere in its chain.
    pub fn is_malformed(&self) -> bool {
        match self {
            RequestBodyError::Plain(error) => error.is_malformed(),
            RequestBodyError::Hyper(error) => {
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    if let Some(io) = cause.downcast_ref::<io::Error>() {
                        if matches!(
                            io.kind(),
                            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
                        ) {
                            return true;
                        }
                    }
                    source = cause.source();
                }
                false
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            RequestBody::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(RequestBodyError::Hyper))),
            RequestBody::Plain(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(RequestBodyError::Plain))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Hyper(body) => body.is_end_stream(),
            RequestBody::Plain(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Hyper(body) => body.size_hint(),
            RequestBody::Plain(body) => body.size_hint(),
        }
    }
}
