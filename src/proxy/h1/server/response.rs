//! Writing a response to the client: the head, the body's framing, and whether the
//! connection persists after it.
//!
//! The framing is decided from what is known of the body, as hyper decides it: a length
//! from the response's `Content-Length` or the body's exact size, else chunked to an
//! HTTP/1.1 client and close-delimited to an HTTP/1.0 one. Nothing is sent for HEAD, 1xx,
//! 204 and 304. The head and the body's first pieces go out in one write whenever the body
//! has them at hand, which for a small proxied response is all of it; the buffer is flushed
//! before waiting for more, so a streamed response is never held back.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{Response, StatusCode, Version};
use http_body::{Body, SizeHint};

use super::date;
use super::io::ClientIo;
use crate::proxy::body::proxy_body::ProxyBody;
use crate::proxy::body::proxy_response::ProxyResponse;
use crate::proxy::h1::client::request_head::chunk_header;
use crate::proxy::h1::client::target_fields::TargetFields;
use crate::proxy::h1::header_maps;
use crate::proxy::h1::headers;
use crate::proxy::h1::message_body::Framing;

/// Body bytes gathered behind the head before they are written.
const GATHER: usize = 16 * 1024;

/// What the request said about its response.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    pub version: Version,
    pub head: bool,
    pub keep_alive: bool,
}

/// What became of the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The response was complete and the connection can take another request.
    KeepAlive,
    /// The connection ends after this response (or the response was cut short).
    Close,
    /// A 101 was sent: the connection belongs to the upgraded protocol now.
    Upgrade,
}

/// Writes `response` in answer to a request that `asked`; `closing` says the server shuts
/// down, so the connection must not persist. `out` is scratch space, left empty.
pub async fn write(
    io: &ClientIo,
    response: ProxyResponse<ProxyBody>,
    asked: Asked,
    closing: bool,
    out: &mut Vec<u8>,
) -> Outcome {
    let (mut parts, target_fields, body) = response.into_wire_parts();
    let (framing, keep_alive) = encode_head(
        &parts,
        &target_fields,
        body.size_hint(),
        asked,
        closing,
        out,
    );
    header_maps::give_back(std::mem::take(&mut parts.headers));
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        body.discard();
        let written = io.write_all([&out[..]]).await;
        out.clear();
        return if written.is_ok() {
            Outcome::Upgrade
        } else {
            Outcome::Close
        };
    }
    let complete = match framing {
        Framing::Empty => {
            body.discard();
            io.write_all([&out[..]]).await.is_ok()
        }
        _ => write_body(io, body, framing, out).await.unwrap_or(false),
    };
    out.clear();
    if complete && keep_alive {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    }
}

/// Answers a request head that was refused with `status`, no body, and the close.
pub async fn refuse(io: &ClientIo, status: StatusCode) -> io::Result<()> {
    let (parts, ()) = Response::builder()
        .status(status)
        .body(())
        .unwrap_or_default()
        .into_parts();
    let asked = Asked {
        version: Version::HTTP_11,
        head: false,
        keep_alive: false,
    };
    let mut out = Vec::new();
    let no_fields = TargetFields::default();
    encode_head(
        &parts,
        &no_fields,
        SizeHint::with_exact(0),
        asked,
        true,
        &mut out,
    );
    io.write_all([&out[..]]).await
}

/// Appends the head to `out`, the target's fields ahead of the proxy's headers; returns how
/// the body is framed and whether the connection may persist.
fn encode_head(
    parts: &http::response::Parts,
    target_fields: &TargetFields,
    size: SizeHint,
    asked: Asked,
    closing: bool,
    out: &mut Vec<u8>,
) -> (Framing, bool) {
    let status = parts.status;
    out.extend_from_slice(if asked.version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // The target's own framing and connection fields stayed behind in the codec.
    out.extend_from_slice(target_fields.text());
    let mut dated = target_fields.is_dated();
    let mut length = target_fields.length();
    let mut close = false;
    for (name, value) in &parts.headers {
        if name == TRANSFER_ENCODING {
            // Ours to decide, below.
            continue;
        } else if name == CONTENT_LENGTH {
            length = length.or_else(|| value.to_str().ok()?.parse::<u64>().ok());
        } else if name == DATE {
            dated = true;
        } else if name == CONNECTION {
            close |=
                headers::tokens(value.as_bytes()).any(|token| token.eq_ignore_ascii_case(b"close"));
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date::append_now(out);
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut framing = match length {
        _ if bodiless => Framing::Empty,
        Some(length) => Framing::Length(length),
        None => match size.exact() {
            Some(exact) => {
                field(
                    out,
                    b"content-length",
                    itoa::Buffer::new().format(exact).as_bytes(),
                );
                Framing::Length(exact)
            }
            None if asked.version == Version::HTTP_11 => {
                if !asked.head {
                    field(out, b"transfer-encoding", b"chunked");
                }
                Framing::Chunked
            }
            None => Framing::UntilClose,
        },
    };
    if asked.head {
        framing = Framing::Empty;
    }
    let keep_alive = asked.keep_alive && !closing && !close && framing != Framing::UntilClose;
    if !close && status != StatusCode::SWITCHING_PROTOCOLS {
        if !keep_alive && asked.version == Version::HTTP_11 {
            field(out, b"connection", b"close");
        } else if keep_alive && asked.version == Version::HTTP_10 {
            field(out, b"connection", b"keep-alive");
        }
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep_alive)
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the body after the head already in `out`; says whether it ended as framed. The
/// body is over (logged and counted) before its last bytes are written, so whoever has
/// read the response can already see it in the log and the metrics.
async fn write_body(
    io: &ClientIo,
    mut body: ProxyBody,
    framing: Framing,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut sent = 0u64;
    loop {
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                io.write_all([&out[..]]).await?;
                out.clear();
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let mut data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Trailers are not forwarded (nor are they by Go's proxy).
                _ => continue,
            },
            Some(Err(_)) => {
                // Cut off by the target or a drain: the client must see it cut off too.
                io.write_all([&out[..]]).await?;
                return Ok(false);
            }
        };
        if let Framing::Length(length) = framing {
            if sent + data.len() as u64 > length {
                // More than the head promised: the excess would be taken as a response.
                data.truncate((length - sent) as usize);
                io.write_all([&out[..], &data[..]]).await?;
                return Ok(false);
            }
        }
        sent += data.len() as u64;
        gather(io, out, data, framing).await?;
    }
    drop(body);
    match framing {
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        Framing::Length(length) if sent < length => {
            io.write_all([&out[..]]).await?;
            return Ok(false);
        }
        _ => {}
    }
    io.write_all([&out[..]]).await?;
    Ok(true)
}

/// Adds `data` (chunk-framed when the body is chunked) behind what `out` holds, writing it
/// all at once when it is large rather than copying it.
async fn gather(io: &ClientIo, out: &mut Vec<u8>, data: Bytes, framing: Framing) -> io::Result<()> {
    let chunked = framing == Framing::Chunked;
    if chunked {
        out.extend_from_slice(&chunk_header(data.len()));
    }
    let suffix: &[u8] = if chunked { b"\r\n" } else { b"" };
    if out.len() + data.len() > GATHER {
        io.write_all([&out[..], &data[..], suffix]).await?;
        out.clear();
    } else {
        out.extend_from_slice(&data);
        out.extend_from_slice(suffix);
    }
    Ok(())
}
