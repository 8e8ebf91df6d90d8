//! Serving one plain HTTP/1.1 client connection: read a head, hand the request to the
//! handler, write its response, and go on while the connection persists.
//!
//! The connection's one task does it all, with no channel or second task between the
//! socket and the handler, and requests are answered in order (pipelined ones too).
//!
//! Its ends:
//! - A refused head is answered with its status, and the connection closes.
//! - A head has `HEADER_READ_TIMEOUT` to arrive in full: from the accept for the first
//!   request, from (about) the end of the previous one for later ones, so an idle
//!   keep-alive connection is closed after 30 s, as hyper's server closed it.
//! - A client that closes while its bodiless request is handled cancels it (logged as 499,
//!   as hyper and Go's server do).
//! - A request body the handler left unread is read off and dropped if it is small, so the
//!   connection can go on; otherwise the connection closes.
//! - Closing with input possibly unread, the socket is shut for writing first and the
//!   input read off for a moment, so the kernel does not reset the connection under the
//!   response the client has yet to read.
//! - At shutdown an idle connection closes at once; one not yet used gets
//!   `FIRST_REQUEST_GRACE` for its first request; a request in flight is answered with
//!   `Connection: close`.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::body::{ClientBody, CONTINUE};
use super::head::{self, HeadError, RequestHead};
use super::io::{ClientIo, READ_RESERVE};
use super::response::{self, Asked, Outcome};
use crate::proxy::client_upgrade::{PendingUpgrade, PlainUpgraded};
use crate::proxy::handler::Handler;
use crate::proxy::header_block::MAX_HEAD_LEN;
use crate::proxy::headers;
use crate::proxy::message_body::{BodyState, Framing};
use crate::proxy::request_body::RequestBody;
use crate::proxy::request_log::Peer;
use crate::proxy::server::FIRST_REQUEST_GRACE;

/// How long a request head may take to arrive, counting the idle time before it (hyper's
/// default, which this replaces).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How far behind the head timer may fall before it is moved.
const TIMER_SLACK: Duration = Duration::from_secs(5);
/// An unread request body up to this size is read off to keep the connection.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How long reading it off, or the input before a close, may take.
const LINGER: Duration = Duration::from_secs(2);

/// Serves `stream` until the client or the server ends the connection.
pub async fn serve(
    stream: TcpStream,
    peer: Peer,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let io = Arc::new(ClientIo::new(stream));
    // A token of the connection's own, so waiting for it never contends with other
    // connections for the listener's.
    let shutdown = shutdown.child_token();
    let mut connection = Connection {
        io: &io,
        shutdown: &shutdown,
        served: 0,
    };
    let mut out = Vec::with_capacity(1024);
    let mut timer = pin!(tokio::time::sleep(HEADER_READ_TIMEOUT));
    let upgrade = loop {
        let head = match connection.read_head(timer.as_mut()).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(HeadFailure::Refused(error)) => {
                tracing::debug!(error = %error, "Refused a request head");
                refuse(&io, error.status()).await;
                return;
            }
            Err(HeadFailure::Io(error)) => {
                tracing::debug!(error = %error, "Reading a request head failed");
                return;
            }
        };
        connection.served += 1;
        let answered = connection.answer(head, &handler, peer, &mut out).await;
        match (answered.outcome, answered.left) {
            (Outcome::KeepAlive, BodyLeft::Nothing) => {}
            (Outcome::KeepAlive, BodyLeft::Small) if connection.read_off_body().await => {}
            (Outcome::KeepAlive | Outcome::Close, _) => return linger_if_unread(&io).await,
            (Outcome::Upgrade, _) => break answered.upgrade,
        }
    };
    // The request that asked for the upgrade held the last other reference to `io`.
    if let (Some(sender), Ok(io)) = (upgrade, Arc::try_unwrap(io)) {
        let (stream, read_ahead) = io.into_parts();
        let _ = sender.send(PlainUpgraded { stream, read_ahead });
    }
}

struct Connection<'a> {
    io: &'a Arc<ClientIo>,
    shutdown: &'a CancellationToken,
    /// Requests read so far.
    served: u64,
}

/// What became of a request once its response was written.
struct Answered {
    outcome: Outcome,
    /// Where the connection goes if this was an upgrade.
    upgrade: Option<oneshot::Sender<PlainUpgraded>>,
    left: BodyLeft,
}

/// What the handler left of the request's body.
#[derive(Clone, Copy)]
enum BodyLeft {
    Nothing,
    /// A few bytes, to be read off so the connection can go on.
    Small,
    /// Too much to read off, a broken body, or one the client was never asked to send
    /// (it waits for a `100 Continue`): the connection ends after the response.
    TooMuch,
}

/// What ended a wait for more of a head.
enum Woke {
    Read(io::Result<usize>),
    Shutdown,
    TimedOut,
}

enum HeadFailure {
    Refused(HeadError),
    Io(io::Error),
}

impl From<HeadError> for HeadFailure {
    fn from(error: HeadError) -> Self {
        HeadFailure::Refused(error)
    }
}

impl Connection<'_> {
    /// The next request head; `None` when the connection should end quietly (closed by
    /// the client, timed out, or shut down while idle). `timer` bounds the wait: it runs
    /// from the accept for the first head, and from about when this one began to be
    /// awaited for the others.
    async fn read_head(
        &self,
        mut timer: Pin<&mut Sleep>,
    ) -> Result<Option<RequestHead>, HeadFailure> {
        if self.served > 0 {
            // Moved only when it has fallen behind by `TIMER_SLACK`: re-arming a timer for
            // every request would cost more than the rest of this wait.
            let due = Instant::now() + HEADER_READ_TIMEOUT;
            if timer.deadline() + TIMER_SLACK < due {
                timer.as_mut().reset(due);
            }
        }
        let mut shutdown = pin!(self.shutdown.cancelled());
        let mut grace_given = false;
        loop {
            let idle = {
                let mut read = self.io.lock();
                if !read.buf.is_empty() {
                    if let Some(head) = head::parse(&mut read.buf)? {
                        return Ok(Some(head));
                    }
                }
                read.buf.is_empty()
            };
            let mut filled = pin!(self.io.fill(READ_RESERVE));
            let woke = poll_fn(|cx| {
                if let Poll::Ready(filled) = filled.as_mut().poll(cx) {
                    return Poll::Ready(Woke::Read(filled));
                }
                if idle && !grace_given && shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Shutdown);
                }
                timer.as_mut().poll(cx).map(|()| Woke::TimedOut)
            })
            .await;
            match woke {
                Woke::Read(Ok(0)) | Woke::TimedOut => return Ok(None),
                Woke::Read(Ok(_)) => {}
                Woke::Read(Err(error)) => return Err(HeadFailure::Io(error)),
                Woke::Shutdown if self.served > 0 => return Ok(None),
                Woke::Shutdown => {
                    // Connected just before the shutdown: its request may be on its way.
                    let grace = Instant::now() + FIRST_REQUEST_GRACE;
                    if grace < timer.deadline() {
                        timer.as_mut().reset(grace);
                    }
                    grace_given = true;
                }
            }
        }
    }

    /// Hands the request to `handler` and writes its response. For an upgrade request,
    /// also returns where the upgraded connection goes.
    async fn answer(
        &self,
        head: RequestHead,
        handler: &Handler,
        peer: Peer,
        out: &mut Vec<u8>,
    ) -> Answered {
        let RequestHead {
            mut request,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        let body = if framing == Framing::Empty {
            ClientBody::empty()
        } else {
            let mut read = self.io.lock();
            read.body = BodyState::new(framing);
            read.interim = expect_continue.then_some(CONTINUE);
            read.broken = false;
            ClientBody::new(Arc::clone(self.io))
        };
        let upgrade = headers::is_upgrade(request.headers()).then(|| {
            let (pending, sender) = PendingUpgrade::new();
            request.extensions_mut().insert(pending);
            sender
        });
        let asked = Asked {
            version: request.version(),
            head: request.method() == Method::HEAD,
            keep_alive,
        };
        let request = request.map(|()| RequestBody::Plain(body));
        // The handler's future is several KiB: it is pinned where it is made and polled
        // there, never moved (`select!` would copy it in).
        let mut handled = pin!(handler.handle(request, peer));
        let response = if framing == Framing::Empty {
            // A client that leaves takes its request with it: the handler is dropped, the
            // target's exchange abandoned, and the request logged as 499.
            let mut gone = pin!(self.client_gone());
            let raced = poll_fn(|cx| match handled.as_mut().poll(cx) {
                Poll::Ready(response) => Poll::Ready(Some(response)),
                Poll::Pending => gone.as_mut().poll(cx).map(|()| None),
            });
            let Some(response) = raced.await else {
                return Answered {
                    outcome: Outcome::Close,
                    upgrade: None,
                    left: BodyLeft::Nothing,
                };
            };
            response
        } else {
            // The body's reads notice a client that leaves while it is sent.
            handled.await
        };
        let left = self.body_left();
        // The response says whether the connection goes on, so that is decided first.
        let closing = self.shutdown.is_cancelled() || matches!(left, BodyLeft::TooMuch);
        let outcome = response::write(self.io, response, asked, closing, out).await;
        Answered {
            outcome,
            upgrade,
            left,
        }
    }

    /// Completes when the client closes its side of the connection. Whatever it sends
    /// meanwhile (a pipelined request) is kept for later, up to the size of a head.
    async fn client_gone(&self) {
        loop {
            if self.io.lock().buf.len() > MAX_HEAD_LEN {
                return std::future::pending().await;
            }
            // Into the room the buffer has: the head being handled still holds its start,
            // so growing it would cost an allocation per request.
            match self.io.fill(1).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// What the handler left of the request's body; it is done with it by now (the body
    /// goes with the exchange, which is over when the response comes back).
    fn body_left(&self) -> BodyLeft {
        let read = self.io.lock();
        let waiting = read.interim.is_some_and(|rest| !rest.is_empty());
        match read.body {
            _ if read.broken => BodyLeft::TooMuch,
            BodyState::Done => BodyLeft::Nothing,
            BodyState::Length(remaining) if !waiting && remaining <= DRAIN_LIMIT => BodyLeft::Small,
            _ => BodyLeft::TooMuch,
        }
    }

    /// Reads off the small rest of a body; says whether it came in time.
    async fn read_off_body(&self) -> bool {
        let mut body = ClientBody::new(Arc::clone(self.io));
        let drained = async {
            while let Some(frame) = body.frame().await {
                frame?;
            }
            Ok::<_, super::body::ClientBodyError>(())
        };
        matches!(tokio::time::timeout(LINGER, drained).await, Ok(Ok(())))
    }
}

/// Answers a refused head with its status, then closes.
async fn refuse(io: &ClientIo, status: StatusCode) {
    if response::refuse(io, status).await.is_ok() {
        linger(io).await;
    }
}

/// Closes after reading off any input the client may still be sending.
async fn linger_if_unread(io: &ClientIo) {
    let unread = {
        let read = io.lock();
        !read.buf.is_empty() || !read.body.is_done()
    };
    if unread {
        linger(io).await;
    }
}

/// Shuts the socket for writing and reads off what the client still sends, for at most
/// `LINGER`, so the close does not reset the connection under the response.
async fn linger(io: &ClientIo) {
    io.shutdown_write();
    let read_off = async {
        loop {
            io.lock().buf.clear();
            match io.fill(READ_RESERVE).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, read_off).await;
}
