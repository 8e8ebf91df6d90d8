//! `ClientIo`: one client connection, shared by the loop that serves it and the body of the
//! request being served.
//!
//! The request body is read while the handler runs, by whoever polls it (the exchange with
//! the target, or a request buffer), and the response is written by the connection loop.
//! So the socket, the read buffer and the body's progress sit behind a lock, taken only
//! inside a poll and never held across an await, so it is never contended. Reads and
//! writes go through tokio's `AsyncRead`/`AsyncWrite`, which note a short read as the
//! socket drained: no system call is spent learning that it has nothing more.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::proxy::h1::message_body::BodyState;

/// Free space a read of a request head or body makes room for.
pub const READ_RESERVE: usize = 8 * 1024;

pub struct ClientIo {
    inner: Mutex<Inner>,
}

pub struct Inner {
    stream: TcpStream,
    /// What has been read from the client and not yet consumed.
    pub buf: BytesMut,
    /// Where the current request's body is.
    pub body: BodyState,
    /// The body broke (bad framing, or a read failed): the connection cannot go on.
    pub broken: bool,
    /// `100 Continue` bytes still to be sent; `None` when the client does not wait for one.
    pub interim: Option<&'static [u8]>,
}

impl Inner {
    /// Reads more into `buf`, after making room for at least `room` bytes; `Ok(0)` at the
    /// client's close.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<usize>> {
        self.buf.reserve(room);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }

    /// Writes the front of `bytes`; returns how many went.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, bytes)
    }
}

impl ClientIo {
    pub fn new(stream: TcpStream) -> Self {
        ClientIo {
            inner: Mutex::new(Inner {
                stream,
                buf: BytesMut::new(),
                body: BodyState::Done,
                broken: false,
                interim: None,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock with the buffer half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The socket and what was read from it and not consumed.
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        let inner = self.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        (inner.stream, inner.buf)
    }

    /// Reads more into the buffer (see `Inner::poll_fill`).
    pub async fn fill(&self, room: usize) -> io::Result<usize> {
        poll_fn(|cx| self.lock().poll_fill(cx, room)).await
    }

    /// Shuts the socket for writing: the client reads the end of the response, then EOF.
    pub fn shutdown_write(&self) {
        let _ = socket2::SockRef::from(&self.lock().stream).shutdown(std::net::Shutdown::Write);
    }

    /// Writes every byte of `parts`, in as few system calls as the socket allows.
    pub async fn write_all<const N: usize>(&self, parts: [&[u8]; N]) -> io::Result<()> {
        let mut slices = parts.map(IoSlice::new);
        let mut remaining = &mut slices[..];
        while remaining.iter().any(|slice| !slice.is_empty()) {
            let written =
                poll_fn(|cx| Pin::new(&mut self.lock().stream).poll_write_vectored(cx, remaining))
                    .await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut remaining, written);
        }
        Ok(())
    }
}
