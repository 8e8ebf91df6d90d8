//! The Prometheus text exposition format (0.0.4) of a `Metrics`, its workers' series added
//! up, with the Go proxy's series names, help texts and labels, families in name order as
//! Go's client writes them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::registry::{HistogramSnapshot, Metrics, SeriesKey, ServiceSeries, BUCKETS_NANOS};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const IN_FLIGHT: &str = "kamal_proxy_http_in_flight_requests";
const DURATION: &str = "kamal_proxy_http_request_duration_seconds";
const REQUESTS: &str = "kamal_proxy_http_requests_total";

/// A label value with `\`, `"` and newlines escaped.
fn escaped(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Every series, added up over the workers: by service name ("" for unrouted requests),
/// then (method, status), both sorted as Go's client sorts them.
#[derive(Default)]
struct Totals {
    in_flight: BTreeMap<Box<str>, i64>,
    requests: BTreeMap<Box<str>, BTreeMap<SeriesKey, HistogramSnapshot>>,
}

impl Totals {
    fn of(metrics: &Metrics) -> Self {
        let mut totals = Totals::default();
        for worker in metrics.workers() {
            totals.add("".into(), worker.unrouted_series());
            for (name, series) in worker.services() {
                *totals.in_flight.entry(name.clone()).or_default() +=
                    series.in_flight.load(Ordering::Relaxed);
                totals.add(name, &series);
            }
        }
        totals
    }

    fn add(&mut self, service: Box<str>, series: &ServiceSeries) {
        for (key, histogram) in series.requests() {
            *self
                .requests
                .entry(service.clone())
                .or_default()
                .entry(key)
                .or_default() += &histogram.snapshot();
        }
    }
}

/// Renders every series.
pub fn render(metrics: &Metrics) -> String {
    let totals = Totals::of(metrics);
    let mut out = String::new();

    header(
        &mut out,
        IN_FLIGHT,
        "Number of in-flight HTTP requests",
        "gauge",
    );
    for (name, in_flight) in &totals.in_flight {
        let _ = writeln!(
            out,
            "{IN_FLIGHT}{{service=\"{}\"}} {in_flight}",
            escaped(name)
        );
    }

    // Go sorts label values as strings, so "" (unrouted) comes first.
    if !totals.requests.is_empty() {
        header(
            &mut out,
            DURATION,
            "Duration of HTTP requests in seconds",
            "histogram",
        );
    }
    for (service, requests) in &totals.requests {
        for ((method, status), snapshot) in requests {
            let labels = format!(
                "service=\"{}\",method=\"{}\",status=\"{status}\"",
                escaped(service),
                method.as_str()
            );
            histogram_lines(&mut out, &labels, snapshot);
        }
    }

    if !totals.requests.is_empty() {
        header(
            &mut out,
            REQUESTS,
            "Total number of HTTP requests",
            "counter",
        );
    }
    for (service, requests) in &totals.requests {
        for ((method, status), snapshot) in requests {
            let _ = writeln!(
                out,
                "{REQUESTS}{{service=\"{}\",method=\"{}\",status=\"{status}\"}} {}",
                escaped(service),
                method.as_str(),
                snapshot.count
            );
        }
    }
    out
}

fn histogram_lines(out: &mut String, labels: &str, snapshot: &HistogramSnapshot) {
    for (bound, count) in BUCKETS_NANOS.iter().zip(snapshot.cumulative) {
        // Rust prints floats as Go's client does here: `0.005`, `1`, `2.5`.
        let le = *bound as f64 / 1e9;
        let _ = writeln!(out, "{DURATION}_bucket{{{labels},le=\"{le}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{DURATION}_bucket{{{labels},le=\"+Inf\"}} {}\n{DURATION}_sum{{{labels}}} {}\n{DURATION}_count{{{labels}}} {}",
        snapshot.count,
        snapshot.sum_seconds,
        snapshot.count
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, StatusCode};
    use std::time::Duration;

    #[test]
    fn renders_go_series_names_labels_and_buckets() {
        let all = Metrics::default();
        let metrics = all.worker();
        metrics
            .routed(&Method::GET, "web")
            .finish(StatusCode::OK, Duration::from_millis(20));
        let _held = metrics.routed(&Method::POST, "web");
        metrics
            .unrouted(&Method::GET)
            .finish(StatusCode::NOT_FOUND, Duration::from_millis(1));

        let text = render(&all);

        assert!(text.starts_with(
            "# HELP kamal_proxy_http_in_flight_requests Number of in-flight HTTP requests\n\
             # TYPE kamal_proxy_http_in_flight_requests gauge\n\
             kamal_proxy_http_in_flight_requests{service=\"web\"} 1\n\
             # HELP kamal_proxy_http_request_duration_seconds Duration of HTTP requests in seconds\n\
             # TYPE kamal_proxy_http_request_duration_seconds histogram\n\
             kamal_proxy_http_request_duration_seconds_bucket{service=\"\",method=\"GET\",status=\"404\",le=\"0.005\"} 1\n"
        ), "{text}");
        assert!(text.contains("kamal_proxy_http_request_duration_seconds_bucket{service=\"web\",method=\"GET\",status=\"200\",le=\"0.01\"} 0\n"));
        assert!(text.contains("kamal_proxy_http_request_duration_seconds_bucket{service=\"web\",method=\"GET\",status=\"200\",le=\"0.025\"} 1\n"));
        assert!(text.contains("kamal_proxy_http_request_duration_seconds_bucket{service=\"web\",method=\"GET\",status=\"200\",le=\"10\"} 1\n"));
        assert!(text.contains("kamal_proxy_http_request_duration_seconds_sum{service=\"web\",method=\"GET\",status=\"200\"} 0.02\n"));
        assert!(
            text.ends_with(
                "# TYPE kamal_proxy_http_requests_total counter\n\
             kamal_proxy_http_requests_total{service=\"\",method=\"GET\",status=\"404\"} 1\n\
             kamal_proxy_http_requests_total{service=\"web\",method=\"GET\",status=\"200\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn adds_up_the_workers_series() {
        let all = Metrics::default();
        let (one, two) = (all.worker(), all.worker());
        for (worker, millis) in [(&one, 20), (&two, 200), (&two, 2)] {
            worker
                .routed(&Method::GET, "web")
                .finish(StatusCode::OK, Duration::from_millis(millis));
        }
        two.unrouted(&Method::GET)
            .finish(StatusCode::NOT_FOUND, Duration::from_millis(1));
        let (_held_one, _held_two) = (
            one.routed(&Method::POST, "web"),
            two.routed(&Method::POST, "web"),
        );
        one.routed(&Method::GET, "api")
            .finish(StatusCode::OK, Duration::from_millis(1));

        let text = render(&all);

        let series = "service=\"web\",method=\"GET\",status=\"200\"";
        for line in [
            "kamal_proxy_http_in_flight_requests{service=\"api\"} 0\nkamal_proxy_http_in_flight_requests{service=\"web\"} 2\n".to_string(),
            format!("kamal_proxy_http_request_duration_seconds_bucket{{{series},le=\"0.005\"}} 1\n"),
            format!("kamal_proxy_http_request_duration_seconds_bucket{{{series},le=\"0.025\"}} 2\n"),
            format!("kamal_proxy_http_request_duration_seconds_bucket{{{series},le=\"0.25\"}} 3\n"),
            format!("kamal_proxy_http_request_duration_seconds_sum{{{series}}} 0.222\n"),
            format!("kamal_proxy_http_requests_total{{{series}}} 3\n"),
            "kamal_proxy_http_requests_total{service=\"\",method=\"GET\",status=\"404\"} 1\n".to_string(),
        ] {
            assert!(text.contains(&line), "{line} in {text}");
        }
        // One series per label set, not one per worker: `_sum`, `_count` and the counter.
        assert_eq!(text.matches(&format!("{{{series}}}")).count(), 3, "{text}");
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escaped("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
