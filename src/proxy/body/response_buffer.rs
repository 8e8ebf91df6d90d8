//! Response buffering (`--buffer-responses`): the whole target response is read before any
//! of it goes to the client, so a slow reader never ties up an application worker.
//!
//! Over `--max-response-body` the client gets a 500 page instead (Go's choice: the target
//! answered, the proxy could not pass it on). Server-sent events are the exception: an
//! endless stream cannot be held, so a `text/event-stream` response streams live. Upgrades
//! (101) never come here; `forward` passes them straight through.

use std::sync::Arc;

use crate::proxy::body::proxy_response::{HeaderValues, ProxyResponse};
use crate::proxy::body::relay_body::{RelayBody, ResponseBody};
use crate::proxy::body::spill_buffer::{FillError, SpillBuffer, SpillDir, SpillError};
use crate::proxy::h1::client::upstream_body::{UpstreamBody, UpstreamBodyError};
use crate::service::options::TargetOptions;
use http_body::Body;

const EVENT_STREAM: &[u8] = b"text/event-stream";

/// Why a response body could not be held: the target's body failed, or the buffer did (a
/// body over the limit is `SpillError::TooLarge`); the pipeline decides the status.
pub type ResponseBufferError = FillError<UpstreamBodyError>;

pub async fn buffer(
    response: ProxyResponse<UpstreamBody>,
    options: &TargetOptions,
    dir: &Arc<SpillDir>,
) -> Result<ProxyResponse<ResponseBody>, ResponseBufferError> {
    if is_event_stream(response.content_type()) {
        return Ok(response.map(RelayBody::Streamed));
    }
    let (head, body) = response.into_parts();
    let limit = options.max_response_body_size;
    if limit > 0 && body.size_hint().lower() > limit {
        return Err(FillError::Spill(SpillError::TooLarge(limit)));
    }
    // A body read whole with its head is as good as buffered: the target's connection goes
    // back to the pool as its last byte is taken, before any of it is written to the client.
    if body.is_read_whole() {
        return Ok(head.map(|()| RelayBody::Streamed(body)));
    }
    // The rest is rarer, and its future large: boxed, so it does not weigh on every response.
    Box::pin(fill(head, body, options, dir)).await
}

async fn fill(
    head: ProxyResponse<()>,
    body: UpstreamBody,
    options: &TargetOptions,
    dir: &Arc<SpillDir>,
) -> Result<ProxyResponse<ResponseBody>, ResponseBufferError> {
    let limit = options.max_response_body_size;
    let buffer = SpillBuffer::new(Arc::clone(dir), options.max_memory_buffer_size, limit);
    let body = buffer.read_to_end(body).await?;
    Ok(head.map(|()| RelayBody::Buffered(Box::new(body))))
}

/// Whether the media type of `content_type` (before any `;` parameters) is
/// `text/event-stream`.
fn is_event_stream(content_type: Option<&[u8]>) -> bool {
    content_type
        .and_then(|value| value.split(|&b| b == b';').next())
        .is_some_and(|media_type| media_type.trim_ascii().eq_ignore_ascii_case(EVENT_STREAM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_event_streams_by_media_type_only() {
        let is = |value: &str| is_event_stream(Some(value.as_bytes()));
        assert!(is("text/event-stream"));
        assert!(is("Text/Event-Stream ; charset=utf-8"));
        assert!(!is("text/html"));
        assert!(!is("text/event-streams"));
        assert!(!is_event_stream(None));
    }
}
