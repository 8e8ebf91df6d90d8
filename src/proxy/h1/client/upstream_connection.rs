//! `UpstreamConnection`: one HTTP/1.1 connection to a target, driven by the request that
//! uses it.
//!
//! There is no connection task: the request's own task writes the request and reads the
//! response head, and the response body reads the rest from the socket as the client takes
//! it. hyper's client put a task and two channels between a request and its connection,
//! which cost more than everything else we do per request.
//!
//! The request body is sent while the response head is awaited, so a target that answers
//! early (a 413 to an upload it will not read) is heard instead of deadlocking on a full
//! socket; the connection is then not reused, as the body was cut short. Interim responses
//! (100 Continue, 103 Early Hints) are read and dropped, as Go's transport does.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy::body::relay_body::{RelayBody, RelayError};
use crate::proxy::h1::client::request_head::{chunk_header, BodyFraming};
use crate::proxy::h1::client::response_head::{self, HeadError, ResponseHead};

/// TCP keep-alive probes on upstream connections, to notice a target host that vanished.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// The largest request-head buffer a connection keeps for reuse.
const KEPT_HEAD_CAPACITY: usize = 16 * 1024;
/// Free space kept in the read buffer before each read.
pub const READ_RESERVE: usize = 16 * 1024;

pub struct UpstreamConnection {
    pub stream: TcpStream,
    /// Bytes read from the target and not yet consumed. Empty between exchanges: a
    /// connection with anything left over is never reused.
    pub buf: BytesMut,
    /// The last request head sent, kept for its allocation: the next request's head is
    /// encoded into it (`UpstreamPool::send`).
    pub head: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Not one byte of a response came back: the target may have closed the connection as
    /// the request was sent, and never saw it.
    #[error("the target closed the connection without responding: {0}")]
    NoResponse(#[source] io::Error),
    #[error("reading the response from the target failed: {0}")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The client's body, which was being relayed, broke off or was malformed.
    #[error(transparent)]
    ClientBody(RelayError),
}

/// A response head and whether the connection can serve another request after its body.
pub struct Exchanged {
    pub head: ResponseHead,
    pub reusable: bool,
}

impl UpstreamConnection {
    /// Boxed: a connection is made once and serves many requests, and the response body
    /// that holds it during each is moved several times on its way to the client.
    pub async fn connect(address: SocketAddr) -> io::Result<Box<Self>> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        // Best effort: without probes a vanished host is still noticed by the target timeout.
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(Box::new(UpstreamConnection {
            stream,
            buf: BytesMut::new(),
            head: Vec::new(),
        }))
    }

    /// Whether an idle connection can take a request: nothing arrived on it since its last
    /// response. A close (or unsolicited bytes) means it cannot. Costs a syscall only when
    /// the socket was reported readable.
    pub fn is_open_and_quiet(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Keeps `head`'s allocation for the next request's head, unless an outsized request
    /// made it one not worth holding on to while the connection idles.
    pub fn keep_head(&mut self, head: Vec<u8>) {
        if head.capacity() <= KEPT_HEAD_CAPACITY {
            self.head = head;
        }
    }

    /// Sends `head` and the body (if the framing has one) and reads the response head.
    pub async fn exchange(
        &mut self,
        head: &[u8],
        body: Option<(RelayBody, BodyFraming)>,
        method: &Method,
    ) -> Result<Exchanged, ExchangeError> {
        let (mut reader, mut writer) = self.stream.split();
        writer
            .write_all(head)
            .await
            .map_err(ExchangeError::NoResponse)?;
        let Some((body, framing)) = body else {
            let head = read_head(&mut reader, &mut self.buf, method).await?;
            let reusable = head.reusable;
            return Ok(Exchanged { head, reusable });
        };
        let mut send = pin!(send_body(&mut writer, body, framing));
        let mut receive = pin!(read_head(&mut reader, &mut self.buf, method));
        let mut sent = false;
        let mut write_error = None;
        let head = loop {
            tokio::select! {
                biased;
                head = &mut receive => break head,
                result = &mut send, if !sent && write_error.is_none() => match result {
                    Ok(()) => sent = true,
                    Err(SendError::Client(error)) => return Err(ExchangeError::ClientBody(error)),
                    // The target stopped reading: it may have answered already.
                    Err(SendError::Write(error)) => write_error = Some(error),
                },
            }
        };
        let head = match (head, write_error) {
            (Ok(head), _) => head,
            (Err(ExchangeError::NoResponse(_)), Some(error)) => {
                return Err(ExchangeError::NoResponse(error))
            }
            (Err(error), _) => return Err(error),
        };
        let reusable = head.reusable && sent;
        Ok(Exchanged { head, reusable })
    }
}

enum SendError {
    Client(RelayError),
    Write(io::Error),
}

async fn send_body<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut body: RelayBody,
    framing: BodyFraming,
) -> Result<(), SendError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(SendError::Client)?;
        // Trailers are not forwarded (Go's proxy does not either).
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let written = if framing == BodyFraming::Chunked {
            let header = chunk_header(data.len());
            write_all_vectored(writer, &mut [&header, &data, b"\r\n"]).await
        } else {
            writer.write_all(&data).await
        };
        written.map_err(SendError::Write)?;
    }
    if framing == BodyFraming::Chunked {
        writer
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(SendError::Write)?;
    }
    Ok(())
}

/// Writes every byte of `parts` with as few syscalls as the socket allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    parts: &mut [&[u8]],
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        let written = writer.write_vectored(remaining).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut remaining, written);
    }
    Ok(())
}

/// Reads until a final response head (or a 101) is complete, skipping interim responses.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<ResponseHead, ExchangeError> {
    let mut received = false;
    loop {
        if !buf.is_empty() {
            if let Some(head) = response_head::parse(buf, method)? {
                let status = head.status;
                if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                    continue;
                }
                return Ok(head);
            }
        }
        buf.reserve(READ_RESERVE);
        match reader.read_buf(buf).await {
            Ok(0) if !received => {
                return Err(ExchangeError::NoResponse(
                    io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            Ok(0) => {
                return Err(ExchangeError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the target closed the connection in the middle of the response head",
                )))
            }
            Ok(_) => received = true,
            Err(error) if !received => return Err(ExchangeError::NoResponse(error)),
            Err(error) => return Err(ExchangeError::Read(error)),
        }
    }
}
