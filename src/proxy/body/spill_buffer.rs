//! `SpillBuffer`: one message body held whole, its first bytes in memory and the rest in a
//! temporary file, then replayed as a `SpilledBody`.
//!
//! Request and response buffering both hold bodies of any size, so memory per buffered
//! message is capped by `--buffer-memory` and the rest goes to disk (Go's `buffer.go`).
//! A spill file has no name from the moment it exists (`O_TMPFILE`, or create-then-unlink
//! where that is unsupported): it vanishes when the body is dropped, and nothing is left
//! behind even if the proxy is killed. Files are made in a private directory (`SpillDir`),
//! never in a shared one, so other users cannot watch or tamper with them.
//! This file knows nothing of HTTP semantics (limits' status codes, framing headers); the
//! request and response buffers decide those.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::fs::File;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::poll_read_buf;

/// Read and write size for spill files. Go copies in 32 KiB; a little more means fewer
/// trips to the blocking pool per megabyte.
const FILE_CHUNK: usize = 64 * 1024;

/// The directory made when `$RUNTIME_DIRECTORY` is not set.
const PRIVATE_DIR_NAME: &str = "kamal-proxy-buffers";

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The body grew past the limit it was given.
    #[error("body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("spill file failed")]
    Io(#[from] io::Error),
}

/// Why `SpillBuffer::read_to_end` stopped: the body it read failed, or the buffer did.
#[derive(Debug)]
pub enum FillError<E> {
    Body(E),
    Spill(SpillError),
}

/// Where spill files are created: `$RUNTIME_DIRECTORY` under systemd (private to the
/// service, emptied when it stops), else `kamal-proxy-buffers` with mode 0700 in the
/// system temp directory.
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
}

impl SpillDir {
    pub fn from_env() -> Self {
        let runtime = std::env::var_os("RUNTIME_DIRECTORY").filter(|v| !v.is_empty());
        let path = match runtime {
            // systemd joins several `RuntimeDirectory=` entries with ':'; the first is ours.
            Some(dirs) => std::env::split_paths(&dirs)
                .next()
                .unwrap_or_else(|| PathBuf::from(dirs)),
            None => std::env::temp_dir().join(PRIVATE_DIR_NAME),
        };
        SpillDir { path }
    }

    #[cfg(test)]
    pub fn at(path: &std::path::Path) -> Self {
        SpillDir {
            path: path.to_path_buf(),
        }
    }

    /// A new nameless file. The directory is (re)made on every spill, not once at startup,
    /// because a temp-directory cleaner may remove it while the proxy is idle.
    fn create_file(&self) -> io::Result<std::fs::File> {
        match std::fs::DirBuilder::new().mode(0o700).create(&self.path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        // A directory someone else made in /tmp before us could be watched by them.
        let owner = std::fs::metadata(&self.path)?.uid();
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if owner != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is not owned by uid {me}", self.path.display()),
            ));
        }
        tempfile::tempfile_in(&self.path)
    }
}

/// The writing side: bytes are pushed in as they arrive, then `finish` turns them into a
/// body that can be sent.
pub struct SpillBuffer {
    dir: Arc<SpillDir>,
    memory: Vec<u8>,
    memory_limit: usize,
    file: Option<BufWriter<File>>,
    len: u64,
    /// 0: no limit.
    max_len: u64,
}

impl SpillBuffer {
    /// `memory_limit` bytes stay in memory; more than `max_len` bytes (0: no limit) is
    /// refused with `SpillError::TooLarge`.
    pub fn new(dir: Arc<SpillDir>, memory_limit: u64, max_len: u64) -> Self {
        SpillBuffer {
            dir,
            memory: Vec::new(),
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            file: None,
            len: 0,
            max_len,
        }
    }

    pub async fn push(&mut self, mut chunk: &[u8]) -> Result<(), SpillError> {
        let len = self.len + chunk.len() as u64;
        if self.max_len > 0 && len > self.max_len {
            return Err(SpillError::TooLarge(self.max_len));
        }
        self.len = len;
        if self.file.is_none() {
            let take = chunk.len().min(self.memory_limit - self.memory.len());
            self.grow_memory(take);
            self.memory.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if chunk.is_empty() {
                return Ok(());
            }
            tracing::debug!(bytes = self.memory.len(), "Buffer: spilling to disk");
            let dir = Arc::clone(&self.dir);
            let file = tokio::task::spawn_blocking(move || dir.create_file())
                .await
                .map_err(io::Error::other)??;
            self.file = Some(BufWriter::with_capacity(FILE_CHUNK, File::from_std(file)));
        }
        let file = self.file.as_mut().expect("spilled above");
        file.write_all(chunk).await?;
        Ok(())
    }

    /// Makes room for `more` bytes, doubling like `Vec` does but never past the limit,
    /// so a body that fills memory costs `--buffer-memory` and not up to twice that.
    fn grow_memory(&mut self, more: usize) {
        let needed = self.memory.len() + more;
        if needed > self.memory.capacity() {
            let target = needed
                .max(self.memory.capacity() * 2)
                .min(self.memory_limit);
            self.memory.reserve_exact(target - self.memory.len());
        }
    }

    /// Buffers every data frame of `body` and finishes. Trailers are dropped, as Go's
    /// buffer drops them.
    pub async fn read_to_end<B>(mut self, mut body: B) -> Result<SpilledBody, FillError<B::Error>>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(FillError::Body)?.into_data() {
                self.push(&data).await.map_err(FillError::Spill)?;
            }
        }
        self.finish().await.map_err(FillError::Spill)
    }

    pub async fn finish(self) -> Result<SpilledBody, SpillError> {
        let file = match self.file {
            Some(mut writer) => {
                writer.flush().await?;
                let mut file = writer.into_inner();
                file.rewind().await?;
                Some(file)
            }
            None => None,
        };
        let memory = Bytes::from(self.memory);
        Ok(SpilledBody {
            file_remaining: self.len - memory.len() as u64,
            memory: Some(memory).filter(|m| !m.is_empty()),
            file,
            read_buf: BytesMut::new(),
        })
    }
}

/// The reading side: the memory part as one frame, then the file in `FILE_CHUNK` frames.
/// Its exact size hint lets hyper send a `Content-Length`.
pub struct SpilledBody {
    memory: Option<Bytes>,
    file: Option<File>,
    file_remaining: u64,
    read_buf: BytesMut,
}

impl SpilledBody {
    /// A body with nothing in it: a bodyless request sent again on a new connection.
    pub fn empty() -> Self {
        SpilledBody {
            memory: None,
            file: None,
            file_remaining: 0,
            read_buf: BytesMut::new(),
        }
    }

    pub fn len(&self) -> u64 {
        self.memory.as_ref().map_or(0, |m| m.len() as u64) + self.file_remaining
    }
}

impl Body for SpilledBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(memory) = this.memory.take() {
            return Poll::Ready(Some(Ok(Frame::data(memory))));
        }
        let Some(file) = this.file.as_mut().filter(|_| this.file_remaining > 0) else {
            this.file = None;
            return Poll::Ready(None);
        };
        if this.read_buf.capacity() == 0 {
            this.read_buf.reserve(FILE_CHUNK);
        }
        let read = ready!(poll_read_buf(Pin::new(file), cx, &mut this.read_buf));
        Poll::Ready(Some(match read {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spill file is shorter than what was written to it",
            )),
            Ok(n) => {
                this.file_remaining = this.file_remaining.saturating_sub(n as u64);
                Ok(Frame::data(this.read_buf.split().freeze()))
            }
            Err(error) => Err(error),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    async fn buffered(dir: &std::path::Path, memory: u64, max: u64, body: &[u8]) -> SpilledBody {
        let mut buffer = SpillBuffer::new(Arc::new(SpillDir::at(dir)), memory, max);
        for chunk in body.chunks(1000) {
            buffer.push(chunk).await.unwrap();
        }
        buffer.finish().await.unwrap()
    }

    #[tokio::test]
    async fn reads_a_whole_body_and_reports_its_failure_apart_from_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let body = http_body_util::Full::new(Bytes::from(pattern(5000)));
        let new = || SpillBuffer::new(Arc::new(SpillDir::at(dir.path())), 1000, 4000);
        let error = new().read_to_end(body.clone()).await.err().unwrap();
        assert!(matches!(
            error,
            FillError::Spill(SpillError::TooLarge(4000))
        ));

        let failing = http_body_util::StreamBody::new(futures_util::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Err("broken"),
        ]));
        let error = new().read_to_end(failing).await.err().unwrap();
        assert!(matches!(error, FillError::Body("broken")));

        let whole = SpillBuffer::new(Arc::new(SpillDir::at(dir.path())), 1000, 0);
        let spilled = whole.read_to_end(body).await.unwrap();
        assert_eq!(spilled.collect().await.unwrap().to_bytes(), pattern(5000));
    }

    #[tokio::test]
    async fn keeps_a_body_within_the_memory_limit_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("spill");
        let body = pattern(4000);
        let spilled = buffered(&spill, 4000, 0, &body).await;
        assert!(spilled.file.is_none());
        assert!(
            !spill.exists(),
            "no spill directory is made for an in-memory body"
        );
        assert_eq!(spilled.size_hint().exact(), Some(4000));
        assert_eq!(spilled.collect().await.unwrap().to_bytes(), body);
    }

    #[tokio::test]
    async fn spills_the_rest_to_a_nameless_file_and_replays_it_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("spill");
        let body = pattern(300_000);
        let spilled = buffered(&spill, 10_000, 0, &body).await;
        assert!(spilled.file.is_some());
        assert_eq!(spilled.memory.as_ref().map(Bytes::len), Some(10_000));
        assert_eq!(
            std::fs::read_dir(&spill).unwrap().count(),
            0,
            "the spill file has no name"
        );
        let mode = std::fs::metadata(&spill).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "the spill directory is private");
        assert_eq!(spilled.size_hint().exact(), Some(300_000));
        assert_eq!(spilled.collect().await.unwrap().to_bytes(), body);
    }

    #[tokio::test]
    async fn never_holds_more_than_the_memory_limit_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = SpillBuffer::new(Arc::new(SpillDir::at(dir.path())), 1500, 0);
        buffer.push(&pattern(1000)).await.unwrap();
        buffer.push(&pattern(1000)).await.unwrap();
        assert_eq!(buffer.memory.capacity(), 1500);
    }

    #[tokio::test]
    async fn refuses_a_body_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = SpillBuffer::new(Arc::new(SpillDir::at(dir.path())), 100, 1500);
        buffer.push(&pattern(1500)).await.unwrap();
        assert!(matches!(
            buffer.push(b"x").await,
            Err(SpillError::TooLarge(1500))
        ));
    }

    #[tokio::test]
    async fn replays_an_empty_body_as_ended() {
        let dir = tempfile::tempdir().unwrap();
        let spilled = buffered(dir.path(), 100, 0, b"").await;
        assert!(spilled.is_end_stream());
        assert_eq!(spilled.size_hint().exact(), Some(0));
    }
}
