//! `HeaderLines`: where header lines are written, the head being encoded (`Vec<u8>`) or a
//! list for a `HeaderMap`, so that one writer of the proxy's own headers serves both. A leaf:
//! the codec and the pipeline both write through it, and it imports neither.

use http::header::HeaderName;

/// Where header lines go: the encoded head (`Vec<u8>`), or a list for a `HeaderMap`.
pub trait HeaderLines {
    /// Adds `name` with the elements of `value` joined by ", " (a single value is one).
    fn line<'v>(&mut self, name: &HeaderName, value: impl IntoIterator<Item = &'v [u8]>);
}

impl HeaderLines for Vec<u8> {
    fn line<'v>(&mut self, name: &HeaderName, value: impl IntoIterator<Item = &'v [u8]>) {
        self.extend_from_slice(name.as_str().as_bytes());
        self.extend_from_slice(b": ");
        push_list(self, value);
        self.extend_from_slice(b"\r\n");
    }
}

/// Appends `elements` separated by ", ".
pub fn push_list<'v>(out: &mut Vec<u8>, elements: impl IntoIterator<Item = &'v [u8]>) {
    for (index, element) in elements.into_iter().enumerate() {
        if index > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(element);
    }
}
