//! WebSockets over HTTP/2 (RFC 8441, "extended CONNECT"), translated to the HTTP/1.1 upgrade
//! the target understands.
//!
//! Browsers open a WebSocket as a stream of an HTTP/2 connection they already have when the
//! server advertises `SETTINGS_ENABLE_CONNECT_PROTOCOL`: a `CONNECT` request with the
//! `:protocol` pseudo-header `websocket`, answered `200`. Targets speak HTTP/1.1 only, so the
//! request becomes `GET` with `Connection: Upgrade`, `Upgrade: websocket` and a key of our
//! own (the HTTP/2 client sends none), and the target's `101` is checked against that key and
//! becomes the `200` the client waits for. From then on the stream and the target's upgraded
//! connection are spliced like any HTTP/1.1 upgrade, so drains and shutdown close both alike.
//! Any other answer goes back unchanged except a 2xx: to an HTTP/2 client that would mean the
//! WebSocket is open, and it is not.
//!
//! Every `CONNECT` ends here: a plain one (no `:protocol`, HTTP/1.1 or HTTP/2) asks for a
//! TCP tunnel, which a reverse proxy does not open, and any protocol but `websocket` is
//! refused too, as this proxy cannot carry it (both 501).

use base64::Engine;
use http::header::{
    HeaderValue, CONNECTION, CONTENT_LENGTH, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use http::{Method, Request, StatusCode};
use hyper::ext::Protocol;
use ring::rand::{SecureRandom, SystemRandom};

use crate::proxy::body::proxy_response::ProxyResponse;
use crate::proxy::pipeline::forward::ForwardError;

/// RFC 6455 §1.3: appended to the key before hashing it into `Sec-WebSocket-Accept`.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an extended `CONNECT` cannot be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ExtendedConnectError {
    /// A `:protocol` other than `websocket` (WebTransport, CONNECT-UDP, ...): 501.
    #[error("unsupported extended CONNECT protocol")]
    UnsupportedProtocol,
    /// A plain `CONNECT` asks for a TCP tunnel, which a reverse proxy does not open: 501.
    /// Forwarded, it would reach the app as `CONNECT /`, which no app can answer.
    #[error("CONNECT without a protocol asks for a tunnel")]
    Tunnel,
    /// The system's random source failed, so there is no key to offer the target: 500.
    #[error("no random bytes for a WebSocket key")]
    NoRandomKey,
}

impl ExtendedConnectError {
    pub fn status(&self) -> StatusCode {
        match self {
            ExtendedConnectError::UnsupportedProtocol | ExtendedConnectError::Tunnel => {
                StatusCode::NOT_IMPLEMENTED
            }
            ExtendedConnectError::NoRandomKey => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A WebSocket opened by extended `CONNECT` and sent on as an HTTP/1.1 upgrade: what the
/// target's answer must carry to prove it switched to WebSocket.
#[derive(Debug)]
pub struct Handshake {
    expected_accept: HeaderValue,
}

/// Turns an HTTP/2 WebSocket request into the HTTP/1.1 upgrade request for the target, and
/// returns the handshake to check the answer against. A plain `CONNECT` is refused. Any
/// other request is left untouched (`Ok(None)`); for them this costs one method comparison.
pub fn translate<B>(request: &mut Request<B>) -> Result<Option<Handshake>, ExtendedConnectError> {
    if request.method() != Method::CONNECT {
        return Ok(None);
    }
    let Some(protocol) = request.extensions().get::<Protocol>() else {
        return Err(ExtendedConnectError::Tunnel);
    };
    // Upgrade tokens are case-insensitive (RFC 9110 §7.8).
    if !protocol.as_str().eq_ignore_ascii_case("websocket") {
        return Err(ExtendedConnectError::UnsupportedProtocol);
    }
    let mut nonce = [0u8; 16];
    if let Err(error) = SystemRandom::new().fill(&mut nonce) {
        tracing::error!(error = %error, "Failed to generate a WebSocket key");
        return Err(ExtendedConnectError::NoRandomKey);
    }
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let expected_accept = accept_for(key.as_bytes());
    *request.method_mut() = Method::GET;
    let headers = request.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    // Infallible: base64 is ASCII.
    headers.insert(
        SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(&key).expect("base64 key"),
    );
    Ok(Some(Handshake { expected_accept }))
}

/// RFC 6455 §4.2.2: base64 of the SHA-1 of the key and the GUID.
fn accept_for(key: &[u8]) -> HeaderValue {
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(WEBSOCKET_GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(context.finish());
    // Infallible: base64 is ASCII.
    HeaderValue::from_str(&accept).expect("base64 accept value")
}

impl Handshake {
    /// Makes the target's answer the one the HTTP/2 client expects: a checked `101` becomes
    /// `200` without the HTTP/1.1-only handshake headers (`Sec-WebSocket-Protocol` and
    /// `-Extensions` stay); a 2xx that did not switch, or a `101` with the wrong accept
    /// value, is the target breaking the handshake (502); anything else passes unchanged.
    pub fn answer<B>(&self, response: &mut ProxyResponse<B>) -> Result<(), ForwardError> {
        let status = response.status();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let headers = response.headers_mut();
            if headers.get(SEC_WEBSOCKET_ACCEPT) != Some(&self.expected_accept) {
                return Err(ForwardError::Unreachable(
                    "the target switched protocols without the Sec-WebSocket-Accept for our key"
                        .to_string(),
                ));
            }
            for name in [UPGRADE, CONNECTION, SEC_WEBSOCKET_ACCEPT, CONTENT_LENGTH] {
                headers.remove(name);
            }
            response.set_status(StatusCode::OK);
            return Ok(());
        }
        if status.is_success() {
            return Err(ForwardError::Unreachable(format!(
                "the target answered a WebSocket request with {status} instead of switching protocols"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::client::target_fields;
    use http::header::{SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION};
    use http::Response;

    fn extended_connect(protocol: &'static str) -> Request<()> {
        let mut request = Request::connect("https://a.example.com/ws?room=1")
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_PROTOCOL, "chat")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(Protocol::from_static(protocol));
        request
    }

    /// A target's 101, its fields as the codec passes them on.
    fn switching(accept: &HeaderValue) -> ProxyResponse<()> {
        let fields = target_fields::fields(&[
            ("Connection", b"upgrade"),
            ("Upgrade", b"websocket"),
            ("Sec-WebSocket-Accept", accept.as_bytes()),
            ("Sec-WebSocket-Protocol", b"chat"),
        ]);
        ProxyResponse::from_target(StatusCode::SWITCHING_PROTOCOLS, fields, ())
    }

    #[test]
    fn computes_the_accept_value_of_rfc_6455s_example() {
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn turns_a_websocket_connect_into_an_http1_upgrade_with_a_fresh_key() {
        let mut request = extended_connect("websocket");
        let handshake = translate(&mut request).unwrap().expect("a WebSocket");
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().path_and_query().unwrap(), "/ws?room=1");
        let headers = request.headers();
        assert_eq!(headers[CONNECTION], "upgrade");
        assert_eq!(headers[UPGRADE], "websocket");
        assert_eq!(headers[SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "chat");
        let key = headers[SEC_WEBSOCKET_KEY].as_bytes();
        let nonce = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap();
        assert_eq!(nonce.len(), 16);
        assert_eq!(handshake.expected_accept, accept_for(key));

        let mut other = extended_connect("websocket");
        translate(&mut other).unwrap();
        assert_ne!(other.headers()[SEC_WEBSOCKET_KEY], key, "a key per request");
    }

    #[test]
    fn leaves_other_requests_alone_and_refuses_tunnels_and_other_protocols() {
        let mut plain = Request::connect("a.example.com:443").body(()).unwrap();
        let refused = translate(&mut plain).unwrap_err();
        assert!(matches!(refused, ExtendedConnectError::Tunnel));
        assert_eq!(refused.status(), StatusCode::NOT_IMPLEMENTED);
        assert!(plain.headers().is_empty());

        let mut get = Request::get("/ws").body(()).unwrap();
        assert!(translate(&mut get).unwrap().is_none());
        assert!(get.headers().is_empty());

        let refused = translate(&mut extended_connect("connect-udp")).unwrap_err();
        assert_eq!(refused.status(), StatusCode::NOT_IMPLEMENTED);
    }

    #[test]
    fn answers_200_without_the_http1_handshake_when_the_target_accepts_the_key() {
        let mut request = extended_connect("websocket");
        let handshake = translate(&mut request).unwrap().unwrap();
        let mut response = switching(&accept_for(request.headers()[SEC_WEBSOCKET_KEY].as_bytes()));
        handshake.answer(&mut response).unwrap();
        let response = response.into_http();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "chat");
    }

    #[test]
    fn fails_the_handshake_when_the_target_answers_for_another_key_or_does_not_switch() {
        let handshake = translate(&mut extended_connect("websocket"))
            .unwrap()
            .unwrap();
        let mut wrong = switching(&accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="));
        let error = handshake.answer(&mut wrong).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);

        let mut ignored = ProxyResponse::from(Response::new(()));
        let error = handshake.answer(&mut ignored).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn passes_other_answers_back_unchanged() {
        let handshake = translate(&mut extended_connect("websocket"))
            .unwrap()
            .unwrap();
        let mut refused = ProxyResponse::from(
            Response::builder()
                .status(StatusCode::UPGRADE_REQUIRED)
                .header(SEC_WEBSOCKET_VERSION, "13")
                .body(())
                .unwrap(),
        );
        handshake.answer(&mut refused).unwrap();
        let refused = refused.into_http();
        assert_eq!(refused.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(refused.headers()[SEC_WEBSOCKET_VERSION], "13");
    }
}
