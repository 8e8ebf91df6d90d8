//! `ClientUpgrade`: the client's side of an upgraded connection (a WebSocket), from
//! whichever server read the request.
//!
//! hyper hands its upgraded connections out through `hyper::upgrade::on`; our own HTTP/1.1
//! server puts a `PendingUpgrade` in the request's extensions instead, and sends the socket
//! (with anything the client sent after its request head) once the 101 has been written.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use http::Request;
use hyper::upgrade::OnUpgrade;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A plain HTTP/1.1 connection after its 101.
pub struct PlainUpgraded {
    pub stream: TcpStream,
    /// What the client sent after its request head: the upgraded protocol's first bytes.
    pub read_ahead: BytesMut,
}

/// In an upgrade request's extensions (which must be `Clone`), until the handler takes it.
#[derive(Clone)]
pub struct PendingUpgrade(Arc<Mutex<Option<oneshot::Receiver<PlainUpgraded>>>>);

impl PendingUpgrade {
    pub fn new() -> (Self, oneshot::Sender<PlainUpgraded>) {
        let (sender, receiver) = oneshot::channel();
        (PendingUpgrade(Arc::new(Mutex::new(Some(receiver)))), sender)
    }
}

pub enum ClientUpgrade {
    Hyper(OnUpgrade),
    Plain(oneshot::Receiver<PlainUpgraded>),
}

impl ClientUpgrade {
    /// The client side of `request`'s upgrade, ready once the 101 has been sent.
    pub fn take<B>(request: &mut Request<B>) -> Self {
        let pending = request
            .extensions_mut()
            .remove::<PendingUpgrade>()
            .and_then(|pending| pending.0.lock().ok()?.take());
        match pending {
            Some(receiver) => ClientUpgrade::Plain(receiver),
            None => ClientUpgrade::Hyper(hyper::upgrade::on(request)),
        }
    }
}
