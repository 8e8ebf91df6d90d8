//! Connections to targets: kept alive and reused, never reused with an unread body, and a
//! connection the target closed while idle costs the client nothing.
//!
//! The target here is a minimal hand-written HTTP/1.1 server, so the test controls exactly
//! when it closes connections and can count them.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use support::{HttpClient, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "pool.example.com";
/// Big enough that a client which stops reading leaves most of it unread.
const BIG: usize = 4 * 1024 * 1024;

/// A target that answers `/up` and `/n` with `n`-th request text, `/close` the same but
/// closes the connection after answering (without announcing it), and `/big` with `BIG`
/// bytes.
struct RawTarget {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl RawTarget {
    async fn start() -> RawTarget {
        Self::start_closing_idle(None).await
    }

    /// A target that, like an app server's keep-alive timeout crossing a request on the
    /// wire, closes without answering a request that arrives on a connection idle for at
    /// least `idle`.
    async fn start_closing_idle(idle: Option<Duration>) -> RawTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).unwrap();
                tokio::spawn(serve(stream, idle));
            }
        });
        RawTarget { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, close_when_idle: Option<Duration>) {
    let mut buffer = Vec::new();
    let mut last_answer = std::time::Instant::now();
    loop {
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        if close_when_idle.is_some_and(|idle| last_answer.elapsed() >= idle) {
            return;
        }
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        buffer.drain(..head_end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let body = if path == "/big" {
            vec![b'x'; BIG]
        } else {
            path.clone().into_bytes()
        };
        let response_head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        if stream.write_all(response_head.as_bytes()).await.is_err()
            || stream.write_all(&body).await.is_err()
        {
            return;
        }
        if path == "/close" {
            return;
        }
        last_answer = std::time::Instant::now();
    }
}

async fn proxy_with_target() -> (Proxy, RawTarget) {
    proxy_in_front_of(RawTarget::start().await).await
}

async fn proxy_in_front_of(target: RawTarget) -> (Proxy, RawTarget) {
    let proxy = Proxy::start();
    proxy
        .deploy(
            "pool",
            &format!("127.0.0.1:{}", target.port),
            // Frequent checks keep the checker's own connection from ever idling out.
            &["--host", HOST, "--health-check-interval=100ms"],
        )
        .await;
    (proxy, target)
}

/// Sends `GET path` on `stream` and reads the response (`content-length` framed).
async fn exchange_on(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: {HOST}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the proxy closed the connection");
        received.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&received).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_string)
            })
            .and_then(|value| value.trim().parse().ok())
            .expect("content-length");
        if body.len() >= length {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            return body.to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuses_kept_alive_connections() {
    let (proxy, target) = proxy_with_target().await;
    let before = target.connections();
    // One client connection is served by one worker, which needs one connection to the
    // target for requests one after another.
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    for n in 0..50 {
        let path = format!("/{n}");
        assert_eq!(exchange_on(&mut client, &path).await, path);
    }
    assert_eq!(target.connections() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_target_closed_is_replaced_without_an_error() {
    let (proxy, target) = proxy_with_target().await;
    let client = HttpClient::new(proxy.port());
    for n in 0..40 {
        // Every other request finds the pooled connection just closed by the target.
        let path = if n % 2 == 0 { "/close" } else { "/again" };
        let response = client.get(HOST, path).await;
        assert_eq!(response.status(), 200, "request {n}");
        assert_eq!(response.body, path, "request {n}");
    }
    assert!(target.connections() >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_left_unread_never_reaches_the_next_request() {
    let (proxy, target) = proxy_with_target().await;
    for n in 0..5 {
        // Read the head and a little of a big body, then hang up.
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let request = format!("GET /big HTTP/1.1\r\nhost: {HOST}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut some = [0u8; 8192];
        let read = stream.read(&mut some).await.unwrap();
        assert!(String::from_utf8_lossy(&some[..read]).starts_with("HTTP/1.1 200"));
        drop(stream);

        let path = format!("/after-{n}");
        let response = support::send(proxy.port(), Method::GET, HOST, &path, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.body, path);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        target.connections() >= 5,
        "a half-read connection was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_crossing_the_targets_idle_close_is_sent_again() {
    let target = RawTarget::start_closing_idle(Some(Duration::from_millis(1200))).await;
    let (proxy, _target) = proxy_in_front_of(target).await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(exchange_on(&mut client, "/first").await, "/first");
    // The pooled connection has been idle past the target's limit: the target drops the
    // next request on it unanswered, and the proxy sends it again on a new connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(exchange_on(&mut client, "/second").await, "/second");
}
