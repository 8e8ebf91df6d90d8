//! The on-demand approval check (`--tls-on-demand-url`): may this host get a certificate?
//!
//! As in Go: `GET <url>` with the query parameter `host` set to the candidate (replacing one
//! already there); 200 approves, anything else denies. Two seconds at most, redirects not
//! followed; a denial carries the status and the first 256 bytes of the body, so the
//! operator sees what the endpoint said.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};

use crate::tls::client::{https_client, HttpsClient, Schemes};

const TIMEOUT: Duration = Duration::from_secs(2);
const BODY_SHOWN: usize = 256;

/// `url` with `host=<host>` as its only `host` parameter.
fn check_url(url: &str, host: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("host"))
        .collect();
    let own = format!("host={host}");
    pairs.push(&own);
    format!("{base}?{}", pairs.join("&"))
}

/// `Ok` when the endpoint at `url` approves `host`; else why not.
pub async fn approve(url: &str, host: &str) -> Result<(), String> {
    let target = check_url(url, host);
    let uri: http::Uri = target
        .parse()
        .map_err(|e| format!("invalid on-demand URL {target}: {e}"))?;
    let exchange = async {
        let client: HttpsClient<Empty<Bytes>> = https_client(Vec::new(), Schemes::HttpAndHttps)
            .map_err(|e| format!("{host}: on-demand check failed: {e}"))?;
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("{host}: on-demand check failed: {e}"))?;
        let status = response.status();
        if status == http::StatusCode::OK {
            return Ok(());
        }
        let body = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let shown = String::from_utf8_lossy(&body[..body.len().min(BODY_SHOWN)]).into_owned();
        Err(format!(
            "{host} is not allowed to get a certificate (status: {}, body: {shown:?})",
            status.as_u16()
        ))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{host}: on-demand check timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_the_host_parameter_replacing_any_given() {
        assert_eq!(
            check_url("http://auth/ok", "a.example.com"),
            "http://auth/ok?host=a.example.com"
        );
        assert_eq!(
            check_url("http://auth/ok?x=1&host=evil&y", "a.example.com"),
            "http://auth/ok?x=1&y&host=a.example.com"
        );
    }
}
