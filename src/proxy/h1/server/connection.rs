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

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::body::{ClientBody, CONTINUE};
use super::head::{self, HeadError, RequestHead};
use super::io::{ClientIo, READ_RESERVE};
use super::response::{self, Asked, Outcome};
use super::shutdown_notice::{ShutdownNotice, Watch};
use crate::proxy::body::proxy_body::ProxyBody;
use crate::proxy::body::proxy_response::ProxyResponse;
use crate::proxy::body::request_body::RequestBody;
use crate::proxy::h1::header_block::MAX_HEAD_LEN;
use crate::proxy::h1::headers;
use crate::proxy::h1::message_body::{BodyState, Framing};
use crate::proxy::listen::accept::FIRST_REQUEST_GRACE;
use crate::proxy::pipeline::client_upgrade::{PendingUpgrade, PlainUpgraded};
use crate::proxy::pipeline::handler::Handler;
use crate::proxy::request_log::Peer;

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
    shutdown: Arc<ShutdownNotice>,
) {
    let io = Arc::new(ClientIo::new(stream));
    let mut connection = Connection {
        io: &io,
        shutdown: &shutdown,
        served: 0,
    };
    let mut watch = pin!(shutdown.watch());
    let mut out = Vec::with_capacity(1024);
    let mut timer = pin!(tokio::time::sleep(HEADER_READ_TIMEOUT));
    let upgrade = loop {
        // The head is parsed in this frame and goes from here into the handler's future:
        // returned through a helper future, its 248 bytes were copied at every level.
        connection.rearm(timer.as_mut());
        let mut grace_given = false;
        let head = loop {
            let idle = match connection.parse_head() {
                Ok(Buffered::Head(head)) => break head,
                Ok(Buffered::Partial) => false,
                Ok(Buffered::Nothing) => true,
                Err(error) => {
                    tracing::debug!(error = %error, "Refused a request head");
                    refuse(&io, error.status()).await;
                    return;
                }
            };
            match connection
                .wait_for_head(timer.as_mut(), watch.as_mut(), idle, &mut grace_given)
                .await
            {
                Ok(Waited::Read) => {}
                Ok(Waited::Ended) => return,
                Err(error) => {
                    tracing::debug!(error = %error, "Reading a request head failed");
                    return;
                }
            }
        };
        connection.served += 1;
        let Accepted {
            request,
            framing,
            asked,
            upgrade,
        } = connection.accept(head);
        let answered = {
            // The handler's future is several KiB: it is pinned where it is made and polled
            // there, never moved (`select!` would copy it in), and the request goes straight
            // into it rather than through another future's frame. It is dropped before any
            // lingering below: a request given up is logged at once.
            let handled = pin!(handler.handle(request, peer));
            connection.answer(handled, framing, asked, &mut out).await
        };
        match answered {
            (Outcome::KeepAlive, BodyLeft::Nothing) => {}
            (Outcome::KeepAlive, BodyLeft::Small) if connection.read_off_body().await => {}
            (Outcome::KeepAlive | Outcome::Close, _) => return linger_if_unread(&io).await,
            (Outcome::Upgrade, _) => break upgrade,
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
    shutdown: &'a ShutdownNotice,
    /// Requests read so far.
    served: u64,
}

/// A request read off the connection, ready for the handler.
struct Accepted {
    request: Request<RequestBody>,
    framing: Framing,
    asked: Asked,
    /// Where the connection goes if this is an upgrade.
    upgrade: Option<oneshot::Sender<PlainUpgraded>>,
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

/// What the read buffer holds of the next request head.
#[allow(clippy::large_enum_variant)] // made in place in `serve` and taken apart there, never moved
enum Buffered {
    Head(RequestHead),
    /// Its start.
    Partial,
    Nothing,
}

/// What ended a wait for more of a head.
enum Woke {
    Read(io::Result<usize>),
    Shutdown,
    TimedOut,
}

/// What a wait for more of a head came to.
enum Waited {
    /// More came, or the grace for a first request began: look at the buffer again.
    Read,
    /// The connection should end quietly (closed by the client, timed out, or shut down
    /// while idle).
    Ended,
}

impl Connection<'_> {
    /// Starts the wait for the next head. `timer` bounds it: it runs from the accept for the
    /// first head, and from about when this one began to be awaited for the others.
    fn rearm(&self, timer: Pin<&mut Sleep>) {
        if self.served > 0 {
            // Moved only when it has fallen behind by `TIMER_SLACK`: re-arming a timer for
            // every request would cost more than the rest of this wait.
            let due = Instant::now() + HEADER_READ_TIMEOUT;
            if timer.deadline() + TIMER_SLACK < due {
                timer.reset(due);
            }
        }
    }

    /// The head at the front of the read buffer, if it is all there. Inlined, so the head is
    /// made where `serve` keeps it rather than copied out of a return value.
    #[inline(always)]
    fn parse_head(&self) -> Result<Buffered, HeadError> {
        let mut read = self.io.lock();
        if read.buf.is_empty() {
            return Ok(Buffered::Nothing);
        }
        Ok(match head::parse(&mut read.buf)? {
            Some(head) => Buffered::Head(head),
            None => Buffered::Partial,
        })
    }

    /// Waits for more of a head, within `timer`. Shutdown ends the wait only for a
    /// connection `idle` between requests; one not yet used gets `FIRST_REQUEST_GRACE`
    /// instead, once (`grace_given`).
    async fn wait_for_head(
        &self,
        mut timer: Pin<&mut Sleep>,
        mut shutdown: Pin<&mut Watch<'_>>,
        idle: bool,
        grace_given: &mut bool,
    ) -> io::Result<Waited> {
        let mut filled = pin!(self.io.fill(READ_RESERVE));
        let woke = poll_fn(|cx| {
            if let Poll::Ready(filled) = filled.as_mut().poll(cx) {
                return Poll::Ready(Woke::Read(filled));
            }
            if idle && !*grace_given && shutdown.as_mut().check(cx) {
                return Poll::Ready(Woke::Shutdown);
            }
            timer.as_mut().poll(cx).map(|()| Woke::TimedOut)
        })
        .await;
        match woke {
            Woke::Read(Ok(0)) | Woke::TimedOut => Ok(Waited::Ended),
            Woke::Read(Ok(_)) => Ok(Waited::Read),
            Woke::Read(Err(error)) => Err(error),
            Woke::Shutdown if self.served > 0 => Ok(Waited::Ended),
            Woke::Shutdown => {
                // Connected just before the shutdown: its request may be on its way.
                let grace = Instant::now() + FIRST_REQUEST_GRACE;
                if grace < timer.deadline() {
                    timer.as_mut().reset(grace);
                }
                *grace_given = true;
                Ok(Waited::Read)
            }
        }
    }

    /// Turns `head` into the request for the handler, its body read from this connection.
    /// Inlined, as `parse_head` is.
    #[inline(always)]
    fn accept(&self, head: RequestHead) -> Accepted {
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
        Accepted {
            request: request.map(|()| RequestBody::Plain(body)),
            framing,
            asked,
            upgrade,
        }
    }

    /// Awaits the response the handler makes of a request that `asked` with a body framed
    /// as `framing`, and writes it; says what became of the connection and of the body.
    async fn answer(
        &self,
        mut handled: Pin<&mut impl Future<Output = ProxyResponse<ProxyBody>>>,
        framing: Framing,
        asked: Asked,
        out: &mut Vec<u8>,
    ) -> (Outcome, BodyLeft) {
        let response = if framing == Framing::Empty {
            // A client that leaves takes its request with it: the handler is dropped, the
            // target's exchange abandoned, and the request logged as 499.
            let mut gone = pin!(self.client_gone());
            let raced = poll_fn(|cx| match handled.as_mut().poll(cx) {
                Poll::Ready(response) => Poll::Ready(Some(response)),
                Poll::Pending => gone.as_mut().poll(cx).map(|()| None),
            });
            let Some(response) = raced.await else {
                return (Outcome::Close, BodyLeft::Nothing);
            };
            response
        } else {
            // The body's reads notice a client that leaves while it is sent.
            handled.await
        };
        let left = self.body_left();
        // The response says whether the connection goes on, so that is decided first.
        let closing = self.shutdown.has_begun() || matches!(left, BodyLeft::TooMuch);
        let outcome = response::write(self.io, response, asked, closing, out).await;
        (outcome, left)
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
