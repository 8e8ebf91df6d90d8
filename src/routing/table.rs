//! `RoutingTable`: (host, path prefix) -> service, built once per change.

use std::collections::HashMap;

use crate::control::{Host, PathPrefix};

struct Binding<T> {
    prefix: PathPrefix,
    value: T,
}

/// Bindings of one host entry, longest prefix first.
type Bindings<T> = Vec<Binding<T>>;

pub struct RoutingTable<T> {
    exact: HashMap<Box<str>, Bindings<T>>,
    /// Keyed by the parent domain: `*.example.com` is stored under `example.com`, so a lookup
    /// slices the request host instead of allocating `"*" + suffix`.
    wildcard: HashMap<Box<str>, Bindings<T>>,
    catch_all: Bindings<T>,
}

pub struct RouteMatch<'a, T> {
    pub value: &'a T,
    pub prefix: &'a PathPrefix,
}

impl<T> Default for RoutingTable<T> {
    fn default() -> Self {
        RoutingTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            catch_all: Vec::new(),
        }
    }
}

/// Whether `prefix` matches `path` on a segment boundary: `/app` matches `/app`, `/app/x`,
/// but not `/appointment`.
fn prefix_matches(prefix: &PathPrefix, path: &str) -> bool {
    if prefix.is_root() {
        return true;
    }
    let prefix = prefix.as_str();
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

impl<T> RoutingTable<T> {
    /// Builds the table; a host of `None` is the catch-all. The caller has already refused
    /// duplicate (host, prefix) pairs.
    pub fn build(entries: impl IntoIterator<Item = (Option<Host>, PathPrefix, T)>) -> Self {
        let mut table = RoutingTable::default();
        for (host, prefix, value) in entries {
            let bindings = match host {
                None => &mut table.catch_all,
                Some(host) => match host.as_str().strip_prefix("*.") {
                    Some(parent) => table.wildcard.entry(parent.into()).or_default(),
                    None => table.exact.entry(host.as_str().into()).or_default(),
                },
            };
            bindings.push(Binding { prefix, value });
        }
        let longest_first = |bindings: &mut Bindings<T>| {
            bindings.sort_by_key(|b| std::cmp::Reverse(b.prefix.as_str().len()))
        };
        table.exact.values_mut().for_each(longest_first);
        table.wildcard.values_mut().for_each(longest_first);
        longest_first(&mut table.catch_all);
        table
    }

    /// `host` must already be normalised (`request_host`).
    pub fn lookup(&self, host: &str, path: &str) -> Option<RouteMatch<'_, T>> {
        let bindings = self
            .exact
            .get(host)
            .or_else(|| {
                host.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent))
            })
            .unwrap_or(&self.catch_all);
        bindings
            .iter()
            .find(|binding| prefix_matches(&binding.prefix, path))
            .map(|binding| RouteMatch {
                value: &binding.value,
                prefix: &binding.prefix,
            })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.catch_all.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &str, &'static str)]) -> RoutingTable<&'static str> {
        RoutingTable::build(entries.iter().map(|(host, prefix, value)| {
            let host = (!host.is_empty()).then(|| Host::parse(host).unwrap());
            (host, PathPrefix::parse(prefix).unwrap(), *value)
        }))
    }

    fn route(table: &RoutingTable<&'static str>, host: &str, path: &str) -> Option<&'static str> {
        table.lookup(host, path).map(|m| *m.value)
    }

    #[test]
    fn prefers_exact_then_wildcard_then_catch_all() {
        let t = table(&[
            ("a.example.com", "/", "exact"),
            ("*.example.com", "/", "wild"),
            ("", "/", "default"),
        ]);
        assert_eq!(route(&t, "a.example.com", "/"), Some("exact"));
        assert_eq!(route(&t, "b.example.com", "/"), Some("wild"));
        assert_eq!(route(&t, "example.com", "/"), Some("default"));
        assert_eq!(route(&t, "a.b.example.com", "/"), Some("default"));
    }

    #[test]
    fn matches_prefixes_on_segment_boundaries_longest_first() {
        let t = table(&[
            ("", "/app", "app"),
            ("", "/app/special", "special"),
            ("", "/", "root"),
        ]);
        assert_eq!(route(&t, "x", "/app"), Some("app"));
        assert_eq!(route(&t, "x", "/app/"), Some("app"));
        assert_eq!(route(&t, "x", "/app/special/1"), Some("special"));
        assert_eq!(route(&t, "x", "/appointment"), Some("root"));
    }

    #[test]
    fn does_not_fall_back_when_the_host_entry_has_no_matching_prefix() {
        let t = table(&[("example.com", "/api", "api"), ("", "/", "default")]);
        assert_eq!(route(&t, "example.com", "/"), None);
        assert_eq!(route(&t, "other.com", "/"), Some("default"));
    }

    #[test]
    fn reports_the_matched_prefix() {
        let t = table(&[("", "/api", "api")]);
        assert_eq!(t.lookup("h", "/api/x").unwrap().prefix.as_str(), "/api");
        assert!(t.lookup("h", "/other").is_none());
    }
}
