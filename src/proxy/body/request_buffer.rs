//! Request buffering (`--buffer-requests`): the whole client body is read before the target
//! is contacted, so a slow upload never ties up an application worker.
//!
//! Over `--max-request-body` the request is refused (413), judged by its `Content-Length`
//! before reading when it has one, else while reading; the target never sees it. The body
//! then goes upstream with an exact `Content-Length`, whatever framing the client used.
//! Without buffering no limit applies (Go's behaviour); that path never comes here.

use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_LENGTH};
use http::request::Parts;
use http_body::Body;

use crate::proxy::body::relay_body::RelayBody;
use crate::proxy::body::request_body::{RequestBody, RequestBodyError};
use crate::proxy::body::spill_buffer::{FillError, SpillBuffer, SpillDir, SpillError};
use crate::service::options::TargetOptions;

/// Why a request body could not be held: the client's body failed, or the buffer did (a
/// body over the limit is `SpillError::TooLarge`); the pipeline decides the status.
pub type RequestBufferError = FillError<RequestBodyError>;

/// The body to send, for the request whose head is `head` (which gains the length).
pub async fn buffer(
    head: &mut Parts,
    body: RequestBody,
    options: &TargetOptions,
    dir: &Arc<SpillDir>,
) -> Result<RelayBody, RequestBufferError> {
    let limit = options.max_request_body_size;
    if limit > 0 && body.size_hint().lower() > limit {
        return Err(FillError::Spill(SpillError::TooLarge(limit)));
    }
    if body.is_end_stream() {
        // Nothing to hold (and an upgrade request keeps its connection untouched).
        return Ok(RelayBody::Streamed(body));
    }
    // Reading a body is rarer, and its future large: boxed, so it does not weigh on every
    // request.
    Box::pin(fill(head, body, options, dir)).await
}

async fn fill(
    head: &mut Parts,
    body: RequestBody,
    options: &TargetOptions,
    dir: &Arc<SpillDir>,
) -> Result<RelayBody, RequestBufferError> {
    let limit = options.max_request_body_size;
    let buffer = SpillBuffer::new(Arc::clone(dir), options.max_memory_buffer_size, limit);
    let body = buffer.read_to_end(body).await?;
    head.headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(RelayBody::Buffered(Box::new(body)))
}
