//! The Prometheus text exposition format (0.0.4) of a `Metrics`, with the Go proxy's series
//! names, help texts and labels, families in name order as Go's client writes them.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::registry::{HistogramSnapshot, Metrics, BUCKETS_NANOS};

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

/// Renders every series.
pub fn render(metrics: &Metrics) -> String {
    let services = metrics.services();
    let mut out = String::new();

    header(
        &mut out,
        IN_FLIGHT,
        "Number of in-flight HTTP requests",
        "gauge",
    );
    for (name, series) in &services {
        let _ = writeln!(
            out,
            "{IN_FLIGHT}{{service=\"{}\"}} {}",
            escaped(name),
            series.in_flight.load(Ordering::Relaxed)
        );
    }

    // Go sorts label values as strings, so "" (unrouted) comes first.
    let all: Vec<(String, Vec<_>)> =
        std::iter::once((String::new(), metrics.unrouted_series().requests()))
            .chain(
                services
                    .iter()
                    .map(|(name, series)| (escaped(name), series.requests())),
            )
            .filter(|(_, requests)| !requests.is_empty())
            .collect();

    if !all.is_empty() {
        header(
            &mut out,
            DURATION,
            "Duration of HTTP requests in seconds",
            "histogram",
        );
    }
    for (service, requests) in &all {
        for ((method, status), histogram) in requests {
            let labels = format!(
                "service=\"{service}\",method=\"{}\",status=\"{status}\"",
                method.as_str()
            );
            histogram_lines(&mut out, &labels, &histogram.snapshot());
        }
    }

    if !all.is_empty() {
        header(
            &mut out,
            REQUESTS,
            "Total number of HTTP requests",
            "counter",
        );
    }
    for (service, requests) in &all {
        for ((method, status), histogram) in requests {
            let _ = writeln!(
                out,
                "{REQUESTS}{{service=\"{service}\",method=\"{}\",status=\"{status}\"}} {}",
                method.as_str(),
                histogram.snapshot().count
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
        let metrics = Metrics::default();
        metrics
            .routed(&Method::GET, "web")
            .finish(StatusCode::OK, Duration::from_millis(20));
        let _held = metrics.routed(&Method::POST, "web");
        metrics
            .unrouted(&Method::GET)
            .finish(StatusCode::NOT_FOUND, Duration::from_millis(1));

        let text = render(&metrics);

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
    fn escapes_label_values() {
        assert_eq!(escaped("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
