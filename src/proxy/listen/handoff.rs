//! Handing accepted connections between workers, so that each worker serves its share.
//!
//! Every worker accepts on the same listening sockets, and the kernel wakes all of them for
//! a new connection: the first to run takes it, and every other connection queued with it.
//! A burst of connections (a load balancer filling its pool, a browser opening six) then
//! lands on one worker while the other cores idle; measured with wrk's 64 connections, all
//! 64 went to one worker in two runs of three, and the proxy ran at one core's throughput.
//! `SO_REUSEPORT` would spread connections by hash, but needs a socket per worker: a socket
//! systemd passes is one, and a socket of our own would take the connections queued on it
//! with it when the proxy restarts.
//!
//! So the worker that accepts a connection keeps it unless it already serves at least
//! `SLACK` more than the least loaded worker, and then hands it to that worker (Envoy's
//! "exact balance"). Only whole connections move, before their first byte is read; a moved
//! connection costs a channel send and moving its registration between the two workers'
//! event loops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How many more connections than the least loaded worker a worker keeps before it hands
/// one over: 2, so that two workers one apart never pass connections back and forth.
const SLACK: usize = 2;

/// How many connections each worker serves, counting those handed to it and not yet picked
/// up. Shared by all workers of all listeners.
pub struct WorkerLoads(Box<[Count]>);

/// One worker's count, on a cache line of its own so workers do not contend for it.
#[repr(align(64))]
struct Count(AtomicUsize);

impl WorkerLoads {
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(WorkerLoads(
            (0..workers).map(|_| Count(AtomicUsize::new(0))).collect(),
        ))
    }

    fn of(&self, worker: usize) -> usize {
        self.0[worker].0.load(Ordering::Relaxed)
    }

    fn add(&self, worker: usize) {
        self.0[worker].0.fetch_add(1, Ordering::Relaxed);
    }

    fn remove(&self, worker: usize) {
        self.0[worker].0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The worker that should serve a connection `worker` has just accepted.
    fn place(&self, worker: usize) -> usize {
        let (least, least_load) = (0..self.0.len())
            .map(|other| (other, self.of(other)))
            .min_by_key(|&(_, load)| load)
            .unwrap_or((worker, 0));
        if least_load + SLACK <= self.of(worker) {
            least
        } else {
            worker
        }
    }
}

/// A worker's count of one connection, given back when the connection's task ends.
pub struct Load {
    loads: Arc<WorkerLoads>,
    worker: usize,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.loads.remove(self.worker);
    }
}

/// A connection on its way to another worker.
struct Moved {
    stream: std::net::TcpStream,
    client: SocketAddr,
}

/// One worker's end of one listener's handoff: a way to every worker, and its own inbox.
pub struct Handoff {
    worker: usize,
    loads: Arc<WorkerLoads>,
    outboxes: Vec<mpsc::UnboundedSender<Moved>>,
    inbox: mpsc::UnboundedReceiver<Moved>,
}

/// A connection for this worker to serve.
pub struct Placed {
    pub stream: TcpStream,
    pub client: SocketAddr,
    pub load: Load,
}

impl Handoff {
    /// The ends of one listener's handoff, one per worker, in worker order.
    pub fn for_workers(loads: &Arc<WorkerLoads>) -> Vec<Handoff> {
        let (outboxes, inboxes): (Vec<_>, Vec<_>) = (0..loads.0.len())
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        inboxes
            .into_iter()
            .enumerate()
            .map(|(worker, inbox)| Handoff {
                worker,
                loads: Arc::clone(loads),
                outboxes: outboxes.clone(),
                inbox,
            })
            .collect()
    }

    fn load(&self, worker: usize) -> Load {
        Load {
            loads: Arc::clone(&self.loads),
            worker,
        }
    }

    /// Keeps a connection this worker accepted, or hands it to a less loaded worker
    /// (`None`).
    pub fn place(&self, stream: TcpStream, client: SocketAddr) -> Option<Placed> {
        let to = self.loads.place(self.worker);
        if to == self.worker {
            return self.keep(stream, client);
        }
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::error!(error = %error, "Lost a connection while handing it to another worker");
                return None;
            }
        };
        self.loads.add(to);
        match self.outboxes[to].send(Moved { stream, client }) {
            Ok(()) => None,
            // That worker has stopped taking connections (shutdown): serve it here.
            Err(mpsc::error::SendError(moved)) => {
                self.loads.remove(to);
                self.adopt(moved)
            }
        }
    }

    fn keep(&self, stream: TcpStream, client: SocketAddr) -> Option<Placed> {
        self.loads.add(self.worker);
        Some(Placed {
            stream,
            client,
            load: self.load(self.worker),
        })
    }

    /// Registers a moved connection with this worker's event loop.
    fn adopt(&self, moved: Moved) -> Option<Placed> {
        match TcpStream::from_std(moved.stream) {
            Ok(stream) => self.keep(stream, moved.client),
            Err(error) => {
                tracing::error!(error = %error, "Lost a connection handed over from another worker");
                None
            }
        }
    }

    /// The next connection another worker handed to this one. Never ends while this
    /// handoff is open.
    pub async fn next_moved(&mut self) -> Option<Placed> {
        loop {
            let moved = self.inbox.recv().await?;
            // Counted by the worker that sent it.
            self.loads.remove(self.worker);
            if let Some(placed) = self.adopt(moved) {
                return Some(placed);
            }
        }
    }

    /// Stops taking connections from other workers (their later handoffs fail, and they
    /// serve those connections themselves) and returns the ones already sent.
    pub fn close(&mut self) -> Vec<Placed> {
        self.inbox.close();
        let mut placed = Vec::new();
        while let Ok(moved) = self.inbox.try_recv() {
            self.loads.remove(self.worker);
            placed.extend(self.adopt(moved));
        }
        placed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(counts: &[usize]) -> Arc<WorkerLoads> {
        let loads = WorkerLoads::new(counts.len());
        for (worker, &count) in counts.iter().enumerate() {
            (0..count).for_each(|_| loads.add(worker));
        }
        loads
    }

    #[test]
    fn a_worker_keeps_connections_until_it_is_slack_ahead() {
        assert_eq!(loads(&[0, 0]).place(0), 0);
        assert_eq!(loads(&[1, 0]).place(0), 0);
        assert_eq!(loads(&[2, 0]).place(0), 1);
        assert_eq!(loads(&[5, 4]).place(0), 0);
        assert_eq!(loads(&[3, 7, 1]).place(1), 2);
        assert_eq!(loads(&[4]).place(0), 0);
    }

    #[test]
    fn a_burst_accepted_by_one_worker_ends_up_split_evenly() {
        let loads = loads(&[0, 0]);
        for _ in 0..64 {
            loads.add(loads.place(0));
        }
        assert_eq!((loads.of(0), loads.of(1)), (33, 31));
    }

    async fn connected_pair() -> (TcpStream, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        listener.accept().await.unwrap()
    }

    /// Two workers, the first two connections ahead, and a connection it accepted and
    /// handed to the second.
    async fn one_handed_over() -> (Arc<WorkerLoads>, Vec<Handoff>, SocketAddr) {
        let loads = loads(&[2, 0]);
        let ends = Handoff::for_workers(&loads);
        let (stream, client) = connected_pair().await;
        assert!(ends[0].place(stream, client).is_none());
        (loads, ends, client)
    }

    #[tokio::test]
    async fn a_handed_over_connection_arrives_counted_once() {
        let (loads, mut ends, client) = one_handed_over().await;
        assert_eq!((loads.of(0), loads.of(1)), (2, 1));
        let placed = ends[1].next_moved().await.unwrap();
        assert_eq!(placed.client, client);
        assert_eq!((loads.of(0), loads.of(1)), (2, 1));
        drop(placed);
        assert_eq!(loads.of(1), 0);
    }

    #[tokio::test]
    async fn a_worker_that_stopped_taking_connections_leaves_them_to_the_sender() {
        let loads = loads(&[2, 0]);
        let mut ends = Handoff::for_workers(&loads);
        assert!(ends[1].close().is_empty());
        let (stream, client) = connected_pair().await;
        let placed = ends[0].place(stream, client).expect("kept by the sender");
        assert_eq!((loads.of(0), loads.of(1)), (3, 0));
        drop(placed);
        assert_eq!(loads.of(0), 2);
    }

    #[tokio::test]
    async fn closing_returns_the_connections_already_sent() {
        let (loads, mut ends, _) = one_handed_over().await;
        let placed = ends[1].close();
        assert_eq!(placed.len(), 1);
        assert_eq!(loads.of(1), 1);
    }
}
