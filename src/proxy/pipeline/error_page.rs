//! The proxy's own error pages: 404, 413, 502, 503, 504 with the Go proxy's titles, and a
//! bare `<h1>` page for any other status it has to produce.
//!
//! Rendered on the way out only for errors the proxy raises; an application's own error
//! responses pass through untouched.

use bytes::Bytes;
use http::StatusCode;

use crate::service::page_template::escape_html;
use crate::service::Service;

fn title(status: StatusCode) -> Option<&'static str> {
    Some(match status.as_u16() {
        404 => "404 — Not Found",
        413 => "413 — Content Too Large",
        502 => "502 — Bad Gateway",
        503 => "503 — Service Temporarily Unavailable",
        504 => "504 — Gateway Timeout",
        _ => return None,
    })
}

fn default_text(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "The page you were looking for doesn't exist.",
        413 => "The request is larger than this service accepts.",
        502 => "The service could not be reached. Please try again in a moment.",
        503 => "The service is temporarily unavailable. Please try again later.",
        _ => "The service took too long to respond. Please try again in a moment.",
    }
}

/// The page for `status`; `message` (a stop message) replaces the default text of a 503.
pub fn render(status: StatusCode, message: Option<&str>) -> Bytes {
    let Some(title) = title(status) else {
        return Bytes::from(format!(
            "<h1>{} {}</h1>",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error")
        ));
    };
    let text = match message.filter(|m| !m.is_empty()) {
        Some(message) => {
            let mut escaped = String::with_capacity(message.len());
            escape_html(message, &mut escaped);
            escaped
        }
        None => default_text(status).to_string(),
    };
    Bytes::from(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 0; min-height: 100vh; display: grid; place-items: center; background: #1d4ed8; color: #fff; font-family: system-ui, sans-serif; }}
main {{ max-width: 36rem; padding: 2rem; text-align: center; }}
h1 {{ font-size: 1.75rem; margin: 0 0 1rem; }}
p {{ font-size: 1.1rem; line-height: 1.5; opacity: .9; }}
</style>
</head>
<body>
<main>
<svg width="64" height="64" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.5" aria-hidden="true"><circle cx="12" cy="12" r="10"/><path d="M12 7v6M12 16.5v.5"/></svg>
<h1>{title}</h1>
<p>{text}</p>
</main>
</body>
</html>
"#
    ))
}

/// The page `service` shows for `status`: its own (`--error-pages`) when it has one for the
/// status, else the built-in page.
pub fn for_service(status: StatusCode, message: Option<&str>, service: Option<&Service>) -> Bytes {
    let custom = service
        .and_then(|s| s.error_pages.as_ref())
        .and_then(|pages| pages.render(status, message.unwrap_or("")));
    match custom {
        Some(page) => Bytes::from(page),
        None => render(status, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_go_titles_and_escapes_the_stop_message() {
        let page = render(StatusCode::SERVICE_UNAVAILABLE, Some("<b>back</b> at 5"));
        let page = std::str::from_utf8(&page).unwrap();
        assert!(page.contains("<title>503 — Service Temporarily Unavailable</title>"));
        assert!(page.contains("&lt;b&gt;back&lt;/b&gt; at 5"));
    }

    #[test]
    fn falls_back_to_a_bare_heading_for_other_statuses() {
        assert_eq!(
            &render(StatusCode::BAD_REQUEST, None)[..],
            b"<h1>400 Bad Request</h1>"
        );
    }
}
