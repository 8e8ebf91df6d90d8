//! WebSockets over HTTP/2 as browsers open them (RFC 8441): extended `CONNECT` streams on one
//! TLS connection, each a WebSocket once the server answers 200.
//!
//! [`H2Connection`] also tells whether the server advertised `SETTINGS_ENABLE_CONNECT_PROTOCOL`.
//! hyper's client answers that only through the connection future, which a task must keep
//! polling, so the future is shared between that task and the test.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper::ext::Protocol;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::tls::TlsClient;
use super::{collect, poll_until, Response, REQUEST_TIMEOUT};

/// A WebSocket carried by one HTTP/2 stream.
pub type H2WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// One HTTP/2 connection to the proxy's HTTPS port.
pub struct H2Connection {
    sender: http2::SendRequest<Empty<Bytes>>,
    /// Driven by its own task; locked briefly to poll it or to read the peer's settings.
    connection: Arc<Mutex<Pin<Box<Driven>>>>,
}

type Driven = http2::Connection<TokioIo<TlsStream<TcpStream>>, Empty<Bytes>, TokioExecutor>;

impl H2Connection {
    /// Connects as `client` says (its ALPN must offer `h2`); panics unless the proxy
    /// negotiates HTTP/2.
    pub async fn open(client: &TlsClient<'_>) -> H2Connection {
        let tls = client.connect().await.expect("TLS connection to the proxy");
        let alpn = tls.get_ref().1.alpn_protocol();
        assert_eq!(alpn, Some(&b"h2"[..]), "the proxy negotiates HTTP/2");
        let (sender, connection) =
            http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("HTTP/2 handshake");
        let connection = Arc::new(Mutex::new(Box::pin(connection)));
        let driven = Arc::clone(&connection);
        tokio::spawn(std::future::poll_fn(move |cx| {
            driven.lock().unwrap().as_mut().poll(cx).map(|_| ())
        }));
        H2Connection { sender, connection }
    }

    /// Waits for the server's SETTINGS to enable extended CONNECT.
    pub async fn assert_extended_connect_advertised(&self) {
        poll_until(
            Duration::from_secs(5),
            "SETTINGS_ENABLE_CONNECT_PROTOCOL from the proxy",
            || {
                let connection = self.connection.lock().unwrap();
                std::future::ready(connection.is_extended_connect_protocol_enabled())
            },
        )
        .await;
    }

    /// Opens a WebSocket to `https://<host><path>` (`Sec-WebSocket-Version: 13` unless
    /// `headers` say otherwise). `Ok` holds the 200's headers and the socket; `Err` the
    /// refusal, read whole.
    pub async fn websocket(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(HeaderMap, H2WebSocket), Response> {
        let response = self
            .extended_connect("websocket", host, path, headers)
            .await?;
        let headers = response.headers().clone();
        let upgraded = tokio::time::timeout(REQUEST_TIMEOUT, hyper::upgrade::on(response))
            .await
            .expect("the stream becomes a tunnel within the timeout")
            .expect("a 200 answer to CONNECT opens the tunnel");
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        Ok((headers, socket))
    }

    /// Sends `CONNECT` with `:protocol` set; `Ok` is the 200 (the stream now a tunnel),
    /// `Err` any other answer, read whole.
    pub async fn extended_connect(
        &mut self,
        protocol: &'static str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, Response> {
        let mut request = Request::connect(format!("https://{host}{path}"))
            .header("sec-websocket-version", "13")
            .body(Empty::new())
            .expect("valid request");
        for (name, value) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
                HeaderValue::from_str(value).expect("valid header value"),
            );
        }
        request
            .extensions_mut()
            .insert(Protocol::from_static(protocol));
        let response = self.send(request).await;
        if response.status() != 200 {
            return Err(read_whole(response).await);
        }
        Ok(response)
    }

    /// A plain `CONNECT` to `authority` (no `:protocol`), read whole.
    pub async fn plain_connect(&mut self, authority: &str) -> Response {
        let request = Request::connect(authority)
            .body(Empty::new())
            .expect("valid request");
        read_whole(self.send(request).await).await
    }

    async fn send(
        &mut self,
        request: Request<Empty<Bytes>>,
    ) -> hyper::Response<hyper::body::Incoming> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.sender.send_request(request))
            .await
            .expect("an answer within the timeout")
            .expect("the proxy answers the stream")
    }
}

async fn read_whole(response: hyper::Response<hyper::body::Incoming>) -> Response {
    tokio::time::timeout(REQUEST_TIMEOUT, collect(response))
        .await
        .expect("the body within the timeout")
        .expect("a readable body")
}
