//! `ProxyResponse`: a response on its way to the client, the target's header fields still as
//! text (`TargetFields`) until something needs them in a map.
//!
//! The head (the `http::response::Parts`) holds the status and the headers the proxy set
//! itself; a proxied response's own fields come ahead of those. Reads go through `HeaderValues`, which
//! sees both. A change, or a server that needs every header in a map (hyper, for HTTPS), goes
//! through `headers_mut` or `into_http`, which first take the target's fields into the map,
//! so whatever holds the map sees all the headers. Our HTTP/1.1 server writes the text as is.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::proxy::h1::client::target_fields::TargetFields;
use crate::proxy::h1::header_maps;

/// Header values by name, from a map or from a response whose target fields are still text.
pub trait HeaderValues {
    /// Every value of `name`, in order.
    fn values_of<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// The first `Content-Type` value, read for every response.
    fn content_type(&self) -> Option<&[u8]> {
        self.values_of(&CONTENT_TYPE).next()
    }
}

impl HeaderValues for HeaderMap {
    fn values_of<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).iter().map(HeaderValue::as_bytes)
    }
}

impl<B> HeaderValues for ProxyResponse<B> {
    /// The target's first, then the proxy's.
    fn values_of<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.head
            .target_fields
            .get_all(name)
            .chain(self.head.parts.headers.values_of(name))
    }

    /// Noted as the fields were kept, not looked for.
    fn content_type(&self) -> Option<&[u8]> {
        self.head
            .target_fields
            .content_type()
            .or_else(|| self.head.parts.headers.content_type())
    }
}

pub struct ProxyResponse<B> {
    /// Boxed: the response is moved at every layer between the target and the client, and
    /// its head is most of its size. Moving a pointer is free; copying the head was the
    /// largest share of the proxy's `memcpy`s.
    head: Box<Head>,
    body: B,
}

/// The status and the proxy's own headers, and the target's fields.
struct Head {
    parts: http::response::Parts,
    /// Empty once taken into the map.
    target_fields: TargetFields,
}

impl<B> From<Response<B>> for ProxyResponse<B> {
    fn from(response: Response<B>) -> Self {
        let (parts, body) = response.into_parts();
        ProxyResponse {
            head: Box::new(Head {
                parts,
                target_fields: TargetFields::default(),
            }),
            body,
        }
    }
}

impl<B> ProxyResponse<B> {
    /// A target's response: its status and fields, and `body`.
    pub fn from_target(status: StatusCode, target_fields: TargetFields, body: B) -> Self {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = status;
        ProxyResponse {
            head: Box::new(Head {
                parts,
                target_fields,
            }),
            body,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.head.parts.status
    }

    pub fn set_status(&mut self, status: StatusCode) {
        self.head.parts.status = status;
    }

    pub fn body(&self) -> &B {
        &self.body
    }

    pub fn body_mut(&mut self) -> &mut B {
        &mut self.body
    }

    pub fn map<C>(self, f: impl FnOnce(B) -> C) -> ProxyResponse<C> {
        ProxyResponse {
            head: self.head,
            body: f(self.body),
        }
    }

    /// The response without its body, and the body.
    pub fn into_parts(self) -> (ProxyResponse<()>, B) {
        let head = ProxyResponse {
            head: self.head,
            body: (),
        };
        (head, self.body)
    }

    /// For the writer: the status and the proxy's headers, the target's fields, the body.
    pub fn into_wire_parts(self) -> (http::response::Parts, TargetFields, B) {
        let Head {
            parts,
            target_fields,
        } = *self.head;
        (parts, target_fields, self.body)
    }

    /// All the headers, as a map to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        let head = &mut *self.head;
        if !head.target_fields.is_empty() {
            let target_fields = std::mem::take(&mut head.target_fields);
            let headers = &mut head.parts.headers;
            let own = std::mem::replace(headers, header_maps::take(0));
            target_fields.append_to(headers);
            // The proxy's own headers after the target's; a repeated name comes as `None`.
            let mut last = None;
            for (name, value) in own {
                if let Some(name) = name {
                    last = Some(name);
                }
                if let Some(name) = &last {
                    headers.append(name.clone(), value);
                }
            }
        }
        &mut head.parts.headers
    }

    /// The response with every header in its map.
    pub fn into_http(mut self) -> Response<B> {
        self.headers_mut();
        Response::from_parts(self.head.parts, self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::client::target_fields;
    use http::header::{CONNECTION, SET_COOKIE};

    fn proxied() -> ProxyResponse<()> {
        let fields = target_fields::fields(&[("Set-Cookie", b"a=1"), ("X-App", b"1")]);
        ProxyResponse::from_target(StatusCode::CREATED, fields, ())
    }

    #[test]
    fn reads_the_target_fields_then_the_proxy_headers() {
        let mut response = proxied();
        response
            .head
            .parts
            .headers
            .append(SET_COOKIE, HeaderValue::from_static("kamal-writer=1"));
        let cookies: Vec<_> = response.values_of(&SET_COOKIE).collect();
        assert_eq!(cookies, [&b"a=1"[..], b"kamal-writer=1"]);
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    #[test]
    fn takes_the_target_fields_into_the_map_before_a_change() {
        let mut response = proxied();
        let headers = &mut response.head.parts.headers;
        headers.append(CONNECTION, HeaderValue::from_static("close"));
        headers.append(SET_COOKIE, HeaderValue::from_static("c=3"));
        headers.append(SET_COOKIE, HeaderValue::from_static("d=4"));
        response
            .headers_mut()
            .insert("x-app", HeaderValue::from_static("2"));
        let http = response.into_http();
        let cookies: Vec<_> = http.headers().get_all(SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "c=3", "d=4"]);
        assert_eq!(http.headers()["x-app"], "2");
        assert_eq!(http.headers()[CONNECTION], "close");
        assert_eq!(http.headers().len(), 5);
    }
}
