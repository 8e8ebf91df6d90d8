//! [`RawTarget`]: a hand-written HTTP/1.1 target on 127.0.0.1:0 whose every byte on the
//! wire is chosen by the test, and [`RawClient`]: the same on the client side of the proxy.
//!
//! A general-purpose server library would frame, fix up or refuse exactly the responses a
//! test about framing needs to send (a bad chunk size, two Content-Lengths, bytes after the
//! body, an informational response, data in the same write as a 101), so the target is
//! scripted instead: for each request a closure sees the request head and returns a
//! [`Reply`], a list of raw writes, gates, a close or an echo tunnel. The target
//! counts the connections it accepts, numbers them, and records every request it was sent
//! with its raw head and body bytes, so tests can assert connection reuse and the framing
//! the proxy chose. `GET /up` (the proxy's health check) is answered `200` without the
//! script and is not recorded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::Proxy;

/// The longest any single read in these helpers waits before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The path the proxy's health checks use (the deploy default).
const HEALTH_CHECK_PATH: &str = "/up";

/// A request as the target read it off the wire.
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// Which accepted connection carried it: 1 for the first connection, and so on.
    pub connection: usize,
    /// The request line and headers, through the blank line.
    pub head: Vec<u8>,
    /// The body bytes as framed on the wire (chunk sizes included); empty until read, and
    /// left empty when the reply answered before reading it.
    pub body: Vec<u8>,
    pub method: String,
    pub path: String,
    /// How long the connection had been idle: since its last answer, or since it was
    /// accepted for its first request.
    pub idle_for: Duration,
}

impl RawRequest {
    /// The head as text, for assertions and failure messages.
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// The request line, without its CRLF.
    pub fn request_line(&self) -> String {
        self.head_text().lines().next().unwrap_or("").to_string()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        header_values(&self.head, name)
            .into_iter()
            .map(|value| String::from_utf8_lossy(&value).into_owned())
            .collect()
    }

    /// The body with its transfer coding removed.
    pub fn decoded_body(&self) -> Vec<u8> {
        if is_chunked(&self.head) {
            dechunk(&self.body).expect("a complete chunked body").data
        } else {
            self.body.clone()
        }
    }
}

#[derive(Clone)]
enum Step {
    Write(Vec<u8>),
    /// Waits until the test calls `notify_one` on the gate.
    Wait(Arc<Notify>),
    Close,
    /// From now on the connection is a tunnel: everything read is written back.
    Echo,
}

/// What the target does with one request, in order; after the last step it reads the
/// next request on the same connection unless a step closed it.
#[derive(Clone)]
pub struct Reply {
    read_body: bool,
    steps: Vec<Step>,
}

impl Reply {
    /// Writes `bytes` verbatim, after reading the request body.
    pub fn raw(bytes: impl AsRef<[u8]>) -> Reply {
        Reply {
            read_body: true,
            steps: vec![Step::Write(bytes.as_ref().to_vec())],
        }
    }

    /// `200 OK` with `body`, framed by its Content-Length.
    pub fn ok(body: impl AsRef<[u8]>) -> Reply {
        let body = body.as_ref();
        let mut bytes =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend_from_slice(body);
        Reply::raw(bytes)
    }

    /// Closes the connection without answering.
    pub fn hang_up() -> Reply {
        Reply {
            read_body: true,
            steps: vec![Step::Close],
        }
    }

    /// Answers as soon as the head is read, leaving the body unread.
    pub fn before_reading_body(mut self) -> Reply {
        self.read_body = false;
        self
    }

    pub fn then_write(mut self, bytes: impl AsRef<[u8]>) -> Reply {
        self.steps.push(Step::Write(bytes.as_ref().to_vec()));
        self
    }

    /// Waits for `gate.notify_one()` before the next step.
    pub fn then_wait_for(mut self, gate: &Arc<Notify>) -> Reply {
        self.steps.push(Step::Wait(Arc::clone(gate)));
        self
    }

    pub fn then_close(mut self) -> Reply {
        self.steps.push(Step::Close);
        self
    }

    /// Echoes every byte read afterwards until the peer closes (an upgraded tunnel).
    pub fn then_echo(mut self) -> Reply {
        self.steps.push(Step::Echo);
        self
    }
}

type Script = dyn Fn(&RawRequest) -> Reply + Send + Sync;

struct State {
    connections: AtomicUsize,
    /// Heads read, health checks aside, whether or not their body followed.
    heads: AtomicUsize,
    received: Mutex<Vec<RawRequest>>,
    script: Box<Script>,
}

/// A scripted target; see the module documentation. Stops accepting when the test's
/// runtime ends.
pub struct RawTarget {
    port: u16,
    state: Arc<State>,
}

impl RawTarget {
    /// Answers each request with what `script` returns for it. The script sees the head
    /// only: the body is read (or not) as its reply says.
    pub async fn start(script: impl Fn(&RawRequest) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            connections: AtomicUsize::new(0),
            heads: AtomicUsize::new(0),
            received: Mutex::default(),
            script: Box::new(script),
        });
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
                stream.set_nodelay(true).unwrap();
                tokio::spawn(serve(stream, connection, Arc::clone(&shared)));
            }
        });
        RawTarget { port, state }
    }

    /// Answers each path in `routes` with its reply (every time it is asked), and any
    /// other path with `200` and the path itself as the body.
    pub async fn serving(routes: Vec<(&str, Reply)>) -> Self {
        let routes: Vec<(String, Reply)> = routes
            .into_iter()
            .map(|(path, reply)| (path.to_string(), reply))
            .collect();
        RawTarget::start(move |request| {
            routes
                .iter()
                .find(|(path, _)| *path == request.path)
                .map_or_else(|| Reply::ok(&request.path), |(_, reply)| reply.clone())
        })
        .await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, for `deploy --target`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far, the health checker's included.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Request heads read so far, health checks aside: unlike [`RawTarget::requests`] this
    /// counts a request whose body never arrived in full (the proxy gave up on it), so
    /// `heads_read() == 0` says no byte of any request reached the target.
    pub fn heads_read(&self) -> usize {
        self.state.heads.load(Ordering::SeqCst)
    }

    /// Every request but health checks, in the order they were read. A request is
    /// recorded before its reply is written, so once the reply reached a client the
    /// request is here.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.state.received.lock().unwrap().clone()
    }

    /// The one recorded request for `path`; panics unless there is exactly one.
    pub fn request(&self, path: &str) -> RawRequest {
        let matching: Vec<_> = self
            .requests()
            .into_iter()
            .filter(|request| request.path == path)
            .collect();
        assert_eq!(matching.len(), 1, "requests for {path}: {matching:#?}");
        matching.into_iter().next().unwrap()
    }
}

/// A new proxy with one service, `raw`, routing `host` to `target` alone. Returns once the
/// target is healthy. With a lone target the health checks stop at the first success, so
/// the connections the target accepts afterwards are the proxy's forwarding connections.
pub async fn proxy_in_front_of(target: &RawTarget, host: &str) -> Proxy {
    let proxy = Proxy::start();
    proxy
        .deploy("raw", &target.address(), &["--host", host])
        .await;
    proxy
}

/// The host the framing tests route to their raw target.
pub const FRAMING_HOST: &str = "framing.example.com";

/// A proxy in front of a target answering `routes` (any other path: 200 with the path),
/// served for [`FRAMING_HOST`].
pub async fn proxy_serving(routes: Vec<(&str, Reply)>) -> (Proxy, RawTarget) {
    let target = RawTarget::serving(routes).await;
    let proxy = proxy_in_front_of(&target, FRAMING_HOST).await;
    (proxy, target)
}

/// Asserts `response` is the target's `200` whose body is `body`, complete.
pub fn assert_ok(response: &RawResponse, body: &str) {
    assert_eq!(response.status, 200, "{}", response.head_text());
    assert!(response.complete, "cut off: {response:?}");
    assert_eq!(response.body_text(), body, "{}", response.head_text());
}

async fn serve(mut stream: TcpStream, connection: usize, state: Arc<State>) {
    let mut buffer = Vec::new();
    let mut last_answer = Instant::now();
    loop {
        let head_end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end + 4;
            }
            if !read_more(&mut stream, &mut buffer).await {
                return;
            }
        };
        let head: Vec<u8> = buffer.drain(..head_end).collect();
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut words = text.split(' ');
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("/").to_string();
        let mut request = RawRequest {
            connection,
            head,
            body: Vec::new(),
            method,
            path,
            idle_for: last_answer.elapsed(),
        };
        let reply = if request.path == HEALTH_CHECK_PATH {
            Reply::ok("healthy")
        } else {
            state.heads.fetch_add(1, Ordering::SeqCst);
            (state.script)(&request)
        };
        if reply.read_body {
            match read_body(&mut stream, &mut buffer, &request.head).await {
                Some(body) => request.body = body,
                None => return,
            }
        }
        if request.path != HEALTH_CHECK_PATH {
            state.received.lock().unwrap().push(request);
        }
        for step in reply.steps {
            match step {
                Step::Write(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Step::Wait(gate) => gate.notified().await,
                Step::Close => return,
                Step::Echo => {
                    echo(stream, buffer).await;
                    return;
                }
            }
        }
        last_answer = Instant::now();
    }
}

/// Reads once more into `buffer`; false at the end of the stream or on an error.
async fn read_more(stream: &mut (impl AsyncRead + Unpin), buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads the body `head` announces, from `buffer` first; `None` if the peer left first.
async fn read_body(stream: &mut TcpStream, buffer: &mut Vec<u8>, head: &[u8]) -> Option<Vec<u8>> {
    let end = if is_chunked(head) {
        loop {
            if let Some(body) = dechunk(buffer) {
                break body.end;
            }
            if !read_more(stream, buffer).await {
                return None;
            }
        }
    } else {
        let length = content_length(head).unwrap_or(0);
        while buffer.len() < length {
            if !read_more(stream, buffer).await {
                return None;
            }
        }
        length
    };
    Some(buffer.drain(..end).collect())
}

async fn echo(mut stream: TcpStream, pending: Vec<u8>) {
    if stream.write_all(&pending).await.is_err() {
        return;
    }
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
        if stream.write_all(&chunk[..n]).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Framing helpers shared by both sides
// ---------------------------------------------------------------------------------------

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Every value of header `name` in a message head, raw bytes, in order.
fn header_values(head: &[u8], name: &str) -> Vec<Vec<u8>> {
    head.split(|&byte| byte == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&byte| byte == b':')?;
            let (field, value) = line.split_at(colon);
            field
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| value[1..].trim_ascii().to_vec())
        })
        .collect()
}

fn is_chunked(head: &[u8]) -> bool {
    header_values(head, "transfer-encoding")
        .iter()
        .any(|value| {
            String::from_utf8_lossy(value)
                .to_ascii_lowercase()
                .contains("chunked")
        })
}

fn content_length(head: &[u8]) -> Option<usize> {
    let values = header_values(head, "content-length");
    let first = values.first()?;
    Some(
        String::from_utf8_lossy(first)
            .parse()
            .expect("a numeric content-length"),
    )
}

/// A complete chunked body, decoded.
pub struct Dechunked {
    pub data: Vec<u8>,
    /// The trailer lines, each with its CRLF (empty without trailers).
    pub trailers: Vec<u8>,
    /// Where the body ends in the wire bytes, after the blank line.
    pub end: usize,
}

/// Decodes a complete chunked body at the start of `wire`; `None` while incomplete.
/// Panics on a malformed size line.
pub fn dechunk(wire: &[u8]) -> Option<Dechunked> {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&wire[at..], b"\r\n")?;
        let line = String::from_utf8_lossy(&wire[at..line_end]).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        at = line_end + 2;
        if size == 0 {
            let trailers_start = at;
            loop {
                let end = at + find(&wire[at..], b"\r\n")?;
                if end == at {
                    return Some(Dechunked {
                        data,
                        trailers: wire[trailers_start..at].to_vec(),
                        end: end + 2,
                    });
                }
                at = end + 2;
            }
        }
        if wire.len() < at + size + 2 {
            return None;
        }
        data.extend_from_slice(&wire[at..at + size]);
        at += size + 2;
    }
}

// ---------------------------------------------------------------------------------------
// The client side
// ---------------------------------------------------------------------------------------

/// One response as a client read it off the wire.
pub struct RawResponse {
    /// The status line and headers, through the blank line.
    pub head: Vec<u8>,
    pub status: u16,
    /// The body with its transfer coding removed (as much of it as arrived).
    pub body: Vec<u8>,
    /// Whether the body ended as its framing said; false when the connection closed
    /// before that.
    pub complete: bool,
    /// Whether the body was chunked.
    pub chunked: bool,
    /// A chunked body's trailer lines, each with its CRLF.
    pub trailers: Vec<u8>,
}

impl std::fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawResponse")
            .field("head", &self.head_text())
            .field("body", &self.body_text())
            .field("complete", &self.complete)
            .field("chunked", &self.chunked)
            .field("trailers", &String::from_utf8_lossy(&self.trailers))
            .finish()
    }
}

impl RawResponse {
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// Every value of header `name`, raw bytes, in order.
    pub fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        header_values(&self.head, name)
    }

    /// The single value of header `name` as text, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_values(name);
        assert!(
            values.len() <= 1,
            "more than one {name}: {}",
            self.head_text()
        );
        values
            .first()
            .map(|value| String::from_utf8_lossy(value).into_owned())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection to the proxy that writes raw bytes and reads responses off the
/// wire, keeping whatever arrived past one response for the next. Every read has a
/// deadline of [`READ_TIMEOUT`].
pub struct RawClient<S = TcpStream> {
    stream: S,
    buffer: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: std::net::SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        stream.set_nodelay(true).unwrap();
        RawClient::new(stream)
    }
}

impl<S: AsyncWrite + Unpin> RawClient<S> {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write to the proxy");
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// `GET path` with `Host: host`, and its response.
    pub async fn get(&mut self, host: &str, path: &str) -> RawResponse {
        self.send(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
            .await;
        self.read_response(false).await
    }
}

impl<S: AsyncRead + Unpin> RawClient<S> {
    /// Wraps any readable stream (the read half of a split connection, say).
    pub fn new(stream: S) -> RawClient<S> {
        RawClient {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Reads more; false at the end of the stream. Panics after [`READ_TIMEOUT`].
    async fn fill(&mut self) -> bool {
        match tokio::time::timeout(READ_TIMEOUT, read_more(&mut self.stream, &mut self.buffer))
            .await
        {
            Ok(more) => more,
            Err(_) => panic!(
                "nothing more from the proxy within {READ_TIMEOUT:?}; have {:?}",
                String::from_utf8_lossy(&self.buffer)
            ),
        }
    }

    /// Reads one response. `to_head` says it answers a HEAD request (no body whatever
    /// the headers say).
    pub async fn read_response(&mut self, to_head: bool) -> RawResponse {
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            assert!(
                self.fill().await,
                "the proxy closed the connection before a response head; got {:?}",
                String::from_utf8_lossy(&self.buffer)
            );
        };
        let head: Vec<u8> = self.buffer.drain(..head_end).collect();
        let status: u16 = String::from_utf8_lossy(&head)
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {:?}", String::from_utf8_lossy(&head)));
        let chunked = is_chunked(&head);
        let mut response = RawResponse {
            head,
            status,
            body: Vec::new(),
            complete: true,
            chunked,
            trailers: Vec::new(),
        };
        if to_head || matches!(status, 100..=199 | 204 | 304) {
            return response;
        }
        if chunked {
            loop {
                if let Some(body) = dechunk(&self.buffer) {
                    self.buffer.drain(..body.end);
                    response.body = body.data;
                    response.trailers = body.trailers;
                    return response;
                }
                if !self.fill().await {
                    // Cut off: keep the whole chunks that did arrive.
                    response.body = partial_chunks(&self.buffer);
                    response.complete = false;
                    self.buffer.clear();
                    return response;
                }
            }
        }
        match content_length(&response.head) {
            Some(length) => {
                while self.buffer.len() < length {
                    if !self.fill().await {
                        response.complete = false;
                        break;
                    }
                }
                let end = length.min(self.buffer.len());
                response.body = self.buffer.drain(..end).collect();
            }
            None => {
                while self.fill().await {}
                response.body = std::mem::take(&mut self.buffer);
            }
        }
        response
    }

    /// Reads until `needle` has arrived; returns everything read up to and including it.
    pub async fn read_through(&mut self, needle: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = find(&self.buffer, needle) {
                return self.buffer.drain(..at + needle.len()).collect();
            }
            assert!(
                self.fill().await,
                "the proxy closed the connection before sending {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.buffer)
            );
        }
    }

    /// Reads until the proxy closes the connection; returns what arrived meanwhile.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buffer)
    }
}

/// The data of the whole chunks at the start of a cut-off chunked body.
fn partial_chunks(wire: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut at = 0;
    while let Some(line_end) = find(&wire[at..], b"\r\n").map(|end| at + end) {
        let line = String::from_utf8_lossy(&wire[at..line_end]).into_owned();
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        if size == 0 || wire.len() < line_end + 2 + size {
            break;
        }
        data.extend_from_slice(&wire[line_end + 2..line_end + 2 + size]);
        at = line_end + 2 + size + 2;
        if at > wire.len() {
            break;
        }
    }
    data
}
