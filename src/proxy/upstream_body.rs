//! `UpstreamBody`: a target's response body, which returns its connection to the pool once
//! read to the end.
//!
//! "The end" is the last frame polled, or a body that was empty from the start (HEAD, 204,
//! 304, `Content-Length: 0`), which hyper may never poll. A body dropped before its end
//! drops the connection with it: the unread rest would otherwise greet the next request.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::upstream_pool::Checkin;

pub struct UpstreamBody {
    body: Incoming,
    checkin: Option<Checkin>,
    finished: bool,
}

impl UpstreamBody {
    pub fn new(body: Incoming, checkin: Option<Checkin>) -> Self {
        UpstreamBody {
            body,
            checkin,
            finished: false,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finished = true,
            // A broken body means a broken connection.
            Poll::Ready(Some(Err(_))) => this.checkin = None,
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.is_end_stream() {
            if let Some(checkin) = self.checkin.take() {
                checkin.give_back();
            }
        }
    }
}
