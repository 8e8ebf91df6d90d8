//! `Metrics`: the request counters, duration histograms and in-flight gauges, per service.
//!
//! Series are found by a read-locked lookup keyed by `&str` and small enums, so recording
//! allocates nothing once a (service, method, status) has been seen; a new one takes the
//! write lock once. Counts are atomics. The counter and the histogram's `_count` are one
//! number, because Go bumps both for every request. Series are never removed (as in Go).
//! The locks are std `RwLock`s held for a map lookup only, never across `.await`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::{Method, StatusCode};

use super::series_hasher::BuildSeriesHasher;

/// Go's `prometheus.DefBuckets`, in nanoseconds.
pub(super) const BUCKETS_NANOS: [u64; 11] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The `method` label: the nine standard verbs, anything else `OTHER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum MethodLabel {
    Connect,
    Delete,
    Get,
    Head,
    Options,
    Patch,
    Post,
    Put,
    Trace,
    Other,
}

impl MethodLabel {
    fn of(method: &Method) -> Self {
        match *method {
            Method::CONNECT => MethodLabel::Connect,
            Method::DELETE => MethodLabel::Delete,
            Method::GET => MethodLabel::Get,
            Method::HEAD => MethodLabel::Head,
            Method::OPTIONS => MethodLabel::Options,
            Method::PATCH => MethodLabel::Patch,
            Method::POST => MethodLabel::Post,
            Method::PUT => MethodLabel::Put,
            Method::TRACE => MethodLabel::Trace,
            _ => MethodLabel::Other,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            MethodLabel::Connect => "CONNECT",
            MethodLabel::Delete => "DELETE",
            MethodLabel::Get => "GET",
            MethodLabel::Head => "HEAD",
            MethodLabel::Options => "OPTIONS",
            MethodLabel::Patch => "PATCH",
            MethodLabel::Post => "POST",
            MethodLabel::Put => "PUT",
            MethodLabel::Trace => "TRACE",
            MethodLabel::Other => "OTHER",
        }
    }
}

/// One (service, method, status) series: per-bucket counts (not cumulative), total, sum.
#[derive(Default)]
pub(super) struct Histogram {
    buckets: [AtomicU64; BUCKETS_NANOS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// What a scrape reads of one histogram (of one worker, or added up).
#[derive(Default)]
pub(super) struct HistogramSnapshot {
    /// Cumulative, one per bound in `BUCKETS_NANOS`.
    pub cumulative: [u64; BUCKETS_NANOS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl std::ops::AddAssign<&HistogramSnapshot> for HistogramSnapshot {
    fn add_assign(&mut self, other: &HistogramSnapshot) {
        for (total, more) in self.cumulative.iter_mut().zip(other.cumulative) {
            *total += more;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        if let Some(bucket) = BUCKETS_NANOS.iter().position(|bound| nanos <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0; BUCKETS_NANOS.len()];
        let mut running = 0;
        for (total, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *total = running;
        }
        HistogramSnapshot {
            cumulative,
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

pub(super) type SeriesKey = (MethodLabel, u16);

/// Everything recorded for one service (or for unrouted requests).
#[derive(Default)]
pub(super) struct ServiceSeries {
    pub in_flight: AtomicI64,
    requests: RwLock<HashMap<SeriesKey, Arc<Histogram>, BuildSeriesHasher>>,
}

impl ServiceSeries {
    fn observe(&self, key: SeriesKey, elapsed: Duration) {
        // Nearly always seen before: observed under the read lock, with no `Arc` clone
        // and drop (two atomic read-modify-writes on a line every worker shares).
        if let Some(histogram) = read(&self.requests).get(&key) {
            return histogram.observe(elapsed);
        }
        get_or_insert(&self.requests, &key, || key).observe(elapsed);
    }

    /// Every (method, status) seen, sorted, with its histogram.
    pub(super) fn requests(&self) -> Vec<(SeriesKey, Arc<Histogram>)> {
        let mut requests: Vec<_> = read(&self.requests)
            .iter()
            .map(|(key, histogram)| (*key, Arc::clone(histogram)))
            .collect();
        requests.sort_by_key(|(key, _)| *key);
        requests
    }
}

/// Poisoning needs a panic during a map insert; the map is still usable.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// The value under `key`, created (allocating `owned()`) only the first time.
fn get_or_insert<K, Q, V, S>(
    map: &RwLock<HashMap<K, Arc<V>, S>>,
    key: &Q,
    owned: impl FnOnce() -> K,
) -> Arc<V>
where
    K: Eq + Hash + std::borrow::Borrow<Q>,
    Q: Eq + Hash + ?Sized,
    V: Default,
    S: BuildHasher,
{
    if let Some(value) = read(map).get(key) {
        return Arc::clone(value);
    }
    let mut map = map.write().unwrap_or_else(|e| e.into_inner());
    Arc::clone(map.entry(owned()).or_default())
}

/// The daemon's metrics: a `WorkerMetrics` per data-plane worker, which only that worker
/// records into, so no lock word, count or reference count is written by two cores (a
/// request makes about a dozen such writes; a line that moves between cores costs several
/// times an uncontended write). `/metrics` adds the workers' series up.
#[derive(Default)]
pub struct Metrics {
    workers: Mutex<Vec<Arc<WorkerMetrics>>>,
}

impl Metrics {
    /// A new worker's share, counted from now on.
    pub fn worker(&self) -> Arc<WorkerMetrics> {
        let worker = Arc::new(WorkerMetrics::default());
        lock(&self.workers).push(Arc::clone(&worker));
        worker
    }

    pub(super) fn workers(&self) -> Vec<Arc<WorkerMetrics>> {
        lock(&self.workers).clone()
    }
}

/// Poisoning needs a panic during a push; the list is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One worker's metrics.
#[derive(Default)]
pub struct WorkerMetrics {
    services: RwLock<HashMap<Box<str>, Arc<ServiceSeries>, BuildSeriesHasher>>,
    /// Requests no service took: counted with `service=""`, never in flight (as in Go).
    unrouted: Arc<ServiceSeries>,
}

impl WorkerMetrics {
    /// A request not (yet) routed to a service.
    pub fn unrouted(&self, method: &Method) -> RequestMetrics {
        RequestMetrics {
            method: MethodLabel::of(method),
            record: Record::Unrouted(Arc::clone(&self.unrouted)),
        }
    }

    /// A request routed to `service`: in flight from now until the value is dropped.
    pub fn routed(&self, method: &Method, service: &str) -> RequestMetrics {
        let series = get_or_insert(&self.services, service, || service.into());
        series.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestMetrics {
            method: MethodLabel::of(method),
            record: Record::Routed(InFlight(series)),
        }
    }

    /// Every routed service, sorted by name.
    pub(super) fn services(&self) -> Vec<(Box<str>, Arc<ServiceSeries>)> {
        let mut services: Vec<_> = read(&self.services)
            .iter()
            .map(|(name, series)| (name.clone(), Arc::clone(series)))
            .collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        services
    }

    /// The `service=""` series.
    pub(super) fn unrouted_series(&self) -> &ServiceSeries {
        &self.unrouted
    }
}

/// Counts a routed request in flight until dropped.
struct InFlight(Arc<ServiceSeries>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Record {
    Unrouted(Arc<ServiceSeries>),
    Routed(InFlight),
    /// `--exclude-metrics-path`: neither counted nor in flight.
    Excluded,
}

/// One request's metrics, finished when its response ends.
pub struct RequestMetrics {
    method: MethodLabel,
    record: Record,
}

impl RequestMetrics {
    /// A request on an excluded path: records nothing.
    pub fn excluded() -> Self {
        RequestMetrics {
            method: MethodLabel::Other,
            record: Record::Excluded,
        }
    }

    /// Counts the finished request; it leaves the in-flight gauge as this is dropped.
    pub fn finish(self, status: StatusCode, elapsed: Duration) {
        let series = match &self.record {
            Record::Unrouted(series) | Record::Routed(InFlight(series)) => series,
            Record::Excluded => return,
        };
        series.observe((self.method, status.as_u16()), elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(series: &ServiceSeries, key: SeriesKey) -> u64 {
        series
            .requests()
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, h)| h.snapshot().count)
    }

    #[test]
    fn counts_routed_requests_in_flight_until_they_finish() {
        let metrics = WorkerMetrics::default();
        let request = metrics.routed(&Method::GET, "web");
        let services = metrics.services();
        assert_eq!(services[0].1.in_flight.load(Ordering::Relaxed), 1);
        request.finish(StatusCode::OK, Duration::from_millis(3));
        assert_eq!(services[0].1.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(count(&services[0].1, (MethodLabel::Get, 200)), 1);
    }

    #[test]
    fn counts_unrouted_requests_but_never_in_flight() {
        let metrics = WorkerMetrics::default();
        metrics
            .unrouted(&Method::from_bytes(b"BREW").unwrap())
            .finish(StatusCode::NOT_FOUND, Duration::ZERO);
        let unrouted = metrics.unrouted_series();
        assert!(metrics.services().is_empty());
        assert_eq!(count(unrouted, (MethodLabel::Other, 404)), 1);
        assert_eq!(unrouted.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn records_nothing_for_excluded_requests() {
        let metrics = WorkerMetrics::default();
        RequestMetrics::excluded().finish(StatusCode::OK, Duration::ZERO);
        assert!(metrics.services().is_empty() && metrics.unrouted_series().requests().is_empty());
    }

    #[test]
    fn puts_durations_in_cumulative_buckets_with_inclusive_bounds() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_millis(300));
        histogram.observe(Duration::from_secs(11));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative, [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
        assert_eq!(snapshot.count, 3);
        assert!((snapshot.sum_seconds - 11.305).abs() < 1e-9);
    }
}
