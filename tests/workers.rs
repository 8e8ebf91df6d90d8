//! How the proxy spreads client connections over its worker threads. All workers accept on
//! the same listening socket, and the first to wake would take a whole burst of
//! connections; a worker ahead of the others hands connections on (`src/proxy/listen/handoff.rs`),
//! so a burst, as a load balancer or wrk opens, keeps every core busy.
//!
//! What each worker did is read from the kernel: the CPU time of each worker thread
//! (`/proc/<pid>/task/<tid>/schedstat`).

mod support;

use futures_util::future::join_all;
use support::raw_target::{assert_ok, proxy_serving, RawClient, FRAMING_HOST as HOST};

/// The CPU time, in nanoseconds, each worker thread of process `pid` has used so far.
fn worker_cpu(pid: u32) -> Vec<(String, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the proxy's threads");
    let mut workers = Vec::new();
    for task in tasks {
        let task = task.unwrap().path();
        let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        // Thread names are cut to 15 bytes: `kamal-proxy-worker-N` reads `kamal-proxy-wor`.
        if !name.starts_with("kamal-proxy-wor") {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.join("schedstat")).unwrap();
        let nanos = schedstat
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        workers.push((task.display().to_string(), nanos));
    }
    workers.sort();
    workers
}

#[tokio::test]
async fn a_burst_of_connections_is_served_by_every_worker() {
    let (proxy, _target) = proxy_serving(vec![]).await;
    let before = worker_cpu(proxy.pid());
    if before.len() < 2 {
        eprintln!("one worker on this machine: nothing to spread");
        return;
    }
    // Opened at once, so that one worker may well accept them all.
    let mut clients = join_all((0..8).map(|_| RawClient::connect(proxy.addr()))).await;
    for _ in 0..200 {
        for client in &mut clients {
            assert_ok(&client.get(HOST, "/").await, "/");
        }
    }
    let after = worker_cpu(proxy.pid());
    let used: Vec<u64> = before
        .iter()
        .zip(&after)
        .map(|((_, start), (_, end))| end - start)
        .collect();
    let total: u64 = used.iter().sum();
    let busiest = used.iter().max().unwrap();
    // Shared evenly, no worker does over half; one worker serving all eight does about all.
    assert!(
        *busiest * 4 <= total * 3,
        "one worker did most of the work: CPU nanoseconds per worker {used:?}"
    );
}
