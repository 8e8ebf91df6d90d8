//! `--scope-cookie-paths`: an app served under a stripped path prefix sets cookies as if it
//! were at `/`; this prefixes their `Path` so they stay with that app.
//!
//! Two apps behind one host at `/a` and `/b` would otherwise overwrite each other's session
//! cookies. Only cookies for this host are touched (no `Domain`, or `Domain` equal to the
//! request host): a cookie for a parent or another domain is shared on purpose. The cookie
//! text is edited in place, attribute order kept, so nothing else about it changes.

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue};

use crate::control::PathPrefix;

/// Prefixes the `Path` of every upstream `Set-Cookie` for `host` with `prefix`.
pub fn scope_cookie_paths(headers: &mut HeaderMap, prefix: &PathPrefix, host: &str) {
    let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(SET_COOKIE);
    for cookie in cookies {
        let scoped = cookie
            .to_str()
            .ok()
            .and_then(|text| scoped(text, prefix.as_str(), host))
            .and_then(|text| HeaderValue::from_str(&text).ok())
            .unwrap_or(cookie);
        headers.append(SET_COOKIE, scoped);
    }
}

/// The attribute `name` (case-insensitive) of a `Set-Cookie` value: its index among the
/// `;`-separated parts and its value.
fn attribute<'a>(parts: &[&'a str], name: &str) -> Option<(usize, &'a str)> {
    parts.iter().enumerate().skip(1).find_map(|(index, part)| {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| (index, value.trim()))
    })
}

/// The cookie with its path scoped, or `None` when it belongs to another domain.
fn scoped(cookie: &str, prefix: &str, host: &str) -> Option<String> {
    let mut parts: Vec<&str> = cookie.split(';').collect();
    if let Some((_, domain)) = attribute(&parts, "domain") {
        if !domain.is_empty() && !domain.eq_ignore_ascii_case(host) {
            return None;
        }
    }
    let path = match attribute(&parts, "path") {
        Some((_, "" | "/")) | None => prefix.to_string(),
        Some((_, original)) if original.starts_with('/') => format!("{prefix}{original}"),
        Some((_, original)) => format!("{prefix}/{original}"),
    };
    let new_path = format!(" Path={path}");
    match attribute(&parts, "path") {
        Some((index, _)) => parts[index] = &new_path,
        None => parts.push(&new_path),
    }
    Some(parts.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(cookies: &[&str]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for cookie in cookies {
            headers.append(SET_COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        scope_cookie_paths(
            &mut headers,
            &PathPrefix::parse("/api").unwrap(),
            "app.example.com",
        );
        headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn prefixes_root_nested_and_missing_paths() {
        assert_eq!(
            scope(&[
                "a=1; Path=/",
                "b=2; path=/admin; HttpOnly",
                "c=3",
                "d=4; Secure"
            ]),
            [
                "a=1; Path=/api",
                "b=2; Path=/api/admin; HttpOnly",
                "c=3; Path=/api",
                "d=4; Secure; Path=/api"
            ]
        );
    }

    #[test]
    fn scopes_cookies_for_this_host_and_leaves_other_domains_alone() {
        assert_eq!(
            scope(&[
                "a=1; Domain=app.example.com; Path=/",
                "b=2; Domain=example.com; Path=/",
                "c=3; Domain=sub.app.example.com",
            ]),
            [
                "a=1; Domain=app.example.com; Path=/api",
                "b=2; Domain=example.com; Path=/",
                "c=3; Domain=sub.app.example.com",
            ]
        );
    }
}
