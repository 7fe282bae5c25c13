//! Checks on a request before it reaches the API, by where it came from.
//!
//! The API is root on this host. A web page in a local browser can send requests to a loopback
//! TCP port (CSRF), and a domain it controls can resolve to 127.0.0.1 (DNS rebinding); neither can
//! make a request without an `Origin` header or with a loopback `Host`. So on TCP listeners a
//! request that carries `Origin` is refused, and on plain (loopback) TCP the `Host` must name
//! loopback. And on every listener, a body sent to an endpoint that takes JSON must say it is JSON
//! (a browser's "simple" requests cannot), as Docker's `CheckForJSON`.

use axum::http::{header, HeaderMap, Request};
use axum::response::{IntoResponse, Response};
use berth_types::Error;

use crate::error::ApiError;

/// `None` to go on; `Some(refusal)` otherwise. `loopback_plain`: a plain TCP listener (loopback
/// only); `tcp`: any TCP listener, with or without TLS.
pub fn check<B>(req: &Request<B>, loopback_plain: bool, tcp: bool) -> Option<Response> {
    let h = req.headers();
    if tcp && h.contains_key(header::ORIGIN) {
        return Some(refuse("cross-origin requests are not accepted on the API (Origin header present)"));
    }
    if loopback_plain {
        let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !host.is_empty() && !loopback_host(host) {
            return Some(refuse(&format!("Host {host:?} is not a loopback name: refused on a loopback listener")));
        }
    }
    None
}

fn refuse(msg: &str) -> Response {
    ApiError(Error::new(berth_types::ErrorKind::Forbidden, msg)).into_response()
}

/// `localhost`, `*.localhost`, or a loopback address, with an optional port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(n, _)| n),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A request body for an endpoint that takes JSON: refused unless `Content-Type` is JSON, with
/// Docker's message; an empty body needs no type.
pub fn json_content(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Ok(());
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError(Error::invalid(format!("unsupported Content-Type header ({ct}): must be 'application/json'"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/containers/create");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn browsers_are_refused_on_tcp() {
        let page = req(&[("Host", "127.0.0.1:2375"), ("Origin", "http://evil.example")]);
        assert!(check(&page, true, true).is_some());
        assert!(check(&page, false, true).is_some());
        // A UNIX socket: no browser reaches it; its mode decides.
        assert!(check(&page, false, false).is_none());
        let rebound = req(&[("Host", "evil.example:2375")]);
        assert!(check(&rebound, true, true).is_some());
        for ok in ["127.0.0.1:2375", "localhost:2375", "[::1]:2375", "api.moby.localhost", "127.0.0.1"] {
            assert!(check(&req(&[("Host", ok)]), true, true).is_none(), "{ok}");
        }
        // TLS listeners serve remote names.
        assert!(check(&req(&[("Host", "build-box:2376")]), false, true).is_none());
    }

    #[test]
    fn json_bodies_must_say_so() {
        let mut h = HeaderMap::new();
        assert!(json_content(&h, b"").is_ok());
        let e = json_content(&h, b"{}").unwrap_err();
        assert_eq!(e.0.message, "unsupported Content-Type header (): must be 'application/json'");
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(json_content(&h, b"{}").is_err());
        h.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        assert!(json_content(&h, b"{}").is_ok());
    }
}
