//! The front door: what a web page in someone's browser could make a robot
//! do, refused before any handler runs.
//!
//! - A request that changes something (any method but GET, HEAD, OPTIONS)
//!   with a content type a browser sends cross-site without asking first
//!   (`text/plain`, `application/x-www-form-urlencoded`,
//!   `multipart/form-data`) is refused with 415: handlers read any body as
//!   JSON, so such a request would otherwise act.
//! - A changing request whose `Origin` is neither the robot's own nor one
//!   allowed by `--allow-origin` is refused with 403 (browsers send `Origin`
//!   on every cross-origin request that is not a GET or HEAD, including
//!   those without a body type).
//! - CORS is explicit: no `Access-Control-Allow-*` header is ever sent but to
//!   an allowed origin, and only an allowed origin's preflight is granted.
//! - A robot without authentication answers only requests whose `Host` names
//!   its listen address or a loopback name, with its port (421 otherwise):
//!   a page whose domain was rebound to 127.0.0.1 is same-origin to the
//!   browser, but still names its own domain in `Host`.
//!
//! 0-robot's clients send no `Origin` and either no content type or JSON,
//! so nothing changes for them.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD,
    CONTENT_TYPE, HOST, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use reqwest::Url;

use crate::error::ApiError;
use crate::AppState;

/// The content types a browser may send cross-site without a preflight.
const SIMPLE_CONTENT_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

/// Why an `--allow-origin` value cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("allowed origin (--allow-origin) `{origin}` {reason}; write it scheme://host[:port], as a browser sends it in `Origin`, e.g. https://dashboard.example:8443")]
pub struct OriginError {
    pub origin: String,
    pub reason: String,
}

/// Checks an allowed origin and gives it in the form browsers send
/// (lower case, no default port).
pub fn parse_origin(origin: &str) -> Result<String, OriginError> {
    let bad = |reason: &str| OriginError {
        origin: origin.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(origin).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("does not start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("holds a user name or password"));
    }
    // The parser gives an empty path as `/`: only the text tells `x/` apart.
    let after_scheme = origin.split_once("://").map_or("", |(_, rest)| rest);
    if url.path() != "/" || after_scheme.contains('/') {
        return Err(bad("has a path"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("has a query or a fragment"));
    }
    Ok(url.origin().ascii_serialization())
}

/// An origin as sent in a header, normalized as [`parse_origin`] does;
/// `None` for `null` or anything that is not an http(s) origin.
fn normalize(origin: &str) -> Option<String> {
    let url = Url::parse(origin).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
}

/// The compiled front-door rules of one robot.
pub struct Guard {
    /// `http` or `https`: the robot's own origin is this and its `Host`.
    scheme: &'static str,
    listen: SocketAddr,
    /// Whether `Host` is checked (robots without a JWT key).
    check_host: bool,
    /// Origins allowed by `--allow-origin`, normalized.
    allowed: Vec<String>,
}

impl Guard {
    pub fn new(
        listen: SocketAddr,
        tls: bool,
        open: bool,
        allowed: &[String],
    ) -> Result<Guard, OriginError> {
        Ok(Guard {
            scheme: if tls { "https" } else { "http" },
            listen,
            check_host: open,
            allowed: allowed
                .iter()
                .map(|o| parse_origin(o))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The `Host` of a request (HTTP/2 puts it in the URI instead).
    fn host<'r>(&self, req: &'r Request) -> Option<&'r str> {
        match req.headers().get(HOST) {
            Some(h) => h.to_str().ok(),
            None => req.uri().authority().map(|a| a.as_str()),
        }
    }

    /// Whether `host` (a `Host` header) names this robot for an open robot:
    /// the listen address, a loopback address or `localhost`, with the
    /// listen port. A robot listening on every address accepts any IP
    /// literal: only a domain name can be rebound.
    fn host_is_ours(&self, host: &str) -> bool {
        let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
            return false;
        };
        if authority.as_str().contains('@') {
            return false;
        }
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        if authority.port_u16().unwrap_or(default_port) != self.listen.port() {
            return false;
        }
        let name = authority.host().to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        if name == "localhost" {
            return true;
        }
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => {
                ip.is_loopback() || ip == self.listen.ip() || self.listen.ip().is_unspecified()
            }
            Err(_) => false,
        }
    }

    fn is_allowed(&self, origin: &str) -> bool {
        self.allowed.iter().any(|a| a == origin)
    }

    /// The robot's own origin, as a browser on a page it served sends it.
    fn own_origin(&self, host: Option<&str>) -> Option<String> {
        normalize(&format!("{}://{}", self.scheme, host?))
    }

    fn refuse_host(&self, host: Option<&str>) -> ApiError {
        let listen = self.listen;
        let what = match host {
            Some(h) => format!("the Host header `{h}` names"),
            None => "the request has no Host header, so it names".to_owned(),
        };
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "{what} neither this robot's address ({listen}) nor a loopback name with its port; a robot without authentication answers only to its own address, so that a web page cannot reach it through a rebound domain name: reach it as {}://{listen} (or localhost), or configure --jwt-key",
                self.scheme
            ),
        )
    }
}

fn is_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The first `Content-Type` a browser could have sent cross-site unasked.
fn simple_content_type(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(CONTENT_TYPE) {
        let Ok(text) = value.to_str() else {
            return Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
        };
        for part in text.split(',') {
            let essence = part.split(';').next().unwrap_or("").trim();
            if SIMPLE_CONTENT_TYPES
                .iter()
                .any(|t| t.eq_ignore_ascii_case(essence))
            {
                return Some(essence.to_ascii_lowercase());
            }
        }
    }
    None
}

/// The front door (see the module documentation), run before routing's
/// handlers and inside the metrics layer, so refusals are counted.
pub(crate) async fn front_door(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let guard = &state.guard;
    let host = guard.host(&req).map(str::to_owned);
    if guard.check_host && !host.as_deref().is_some_and(|h| guard.host_is_ours(h)) {
        return guard.refuse_host(host.as_deref()).into_response();
    }
    let origin = req
        .headers()
        .get(ORIGIN)
        .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
    let allowed_origin = origin
        .as_deref()
        .and_then(normalize)
        .filter(|o| guard.is_allowed(o));

    if req.method() == Method::OPTIONS && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    {
        let Some(allowed) = allowed_origin else {
            return ApiError::forbidden(format!(
                "cross-origin requests from `{}` are not allowed; start the robot with --allow-origin ORIGIN to allow a web application's origin",
                origin.as_deref().unwrap_or("(no Origin)")
            ))
            .into_response();
        };
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        cors_headers(h, &allowed);
        h.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
        );
        h.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return resp;
    }

    if is_changing(req.method()) {
        if let Some(ct) = simple_content_type(req.headers()) {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type `{ct}` is refused on a request that changes something: any web page can make a browser send it to this robot without asking; send Content-Type: application/json (or none)"
                ),
            )
            .into_response();
        }
        if let Some(o) = &origin {
            let own = guard.own_origin(host.as_deref());
            let normalized = normalize(o);
            let ours = normalized.is_some() && normalized == own;
            if !ours && allowed_origin.is_none() {
                return ApiError::forbidden(format!(
                    "a request from the web page of origin `{o}` may not change this robot: that origin is not the robot's own and is not allowed; start the robot with --allow-origin {o} to allow it, or send the request without an Origin header"
                ))
                .into_response();
            }
        }
    }

    let mut resp = next.run(req).await;
    if let Some(allowed) = allowed_origin {
        cors_headers(resp.headers_mut(), &allowed);
    }
    resp
}

/// The request headers an allowed web application may send.
const ALLOWED_HEADERS: &str =
    "content-type, zrobotadmin, zrobotuser, zrobotsecret, idempotency-key, x-zrobot-caller-task, traceparent";

fn cors_headers(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.append(VARY, HeaderValue::from_static("origin"));
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("location"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_origins_are_checked_and_normalized() {
        assert_eq!(
            parse_origin("https://Dash.Example:443").unwrap(),
            "https://dash.example"
        );
        assert_eq!(
            parse_origin("http://10.0.0.2:8080").unwrap(),
            "http://10.0.0.2:8080"
        );
        assert_eq!(
            parse_origin("http://[::1]:3000").unwrap(),
            "http://[::1]:3000"
        );
        for (bad, why) in [
            ("dash.example", "not a URL"),
            ("ftp://dash.example", "http://"),
            ("https://dash.example/", "path"),
            ("https://dash.example/app", "path"),
            ("https://dash.example?x=1", "query"),
            ("https://u:p@dash.example", "password"),
            ("null", "not a URL"),
        ] {
            let e = parse_origin(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn host_names_of_an_open_robot() {
        let g = Guard::new("127.0.0.1:6600".parse().unwrap(), false, true, &[]).unwrap();
        for ok in [
            "127.0.0.1:6600",
            "localhost:6600",
            "LocalHost:6600",
            "127.1.2.3:6600",
            "[::1]:6600",
        ] {
            assert!(g.host_is_ours(ok), "{ok}");
        }
        for bad in [
            "evil.example:6600",
            "127.0.0.1:6601",
            "127.0.0.1",
            "localhost.evil.example:6600",
            "10.0.0.1:6600",
            "u@127.0.0.1:6600",
            "",
        ] {
            assert!(!g.host_is_ours(bad), "{bad}");
        }
        let any = Guard::new("0.0.0.0:80".parse().unwrap(), false, true, &[]).unwrap();
        assert!(any.host_is_ours("10.0.0.1"));
        assert!(!any.host_is_ours("robot.example"));
    }

    #[test]
    fn simple_content_types_in_any_case_and_with_parameters() {
        let ct = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            simple_content_type(&h)
        };
        assert_eq!(
            ct("Text/Plain; charset=UTF-8").as_deref(),
            Some("text/plain")
        );
        assert!(ct("multipart/form-data; boundary=x").is_some());
        assert!(ct(" APPLICATION/X-WWW-FORM-URLENCODED ").is_some());
        assert!(ct("application/json, text/plain").is_some());
        assert!(ct("application/json; charset=utf-8").is_none());
        assert!(ct("application/json").is_none());
        assert!(simple_content_type(&HeaderMap::new()).is_none());
    }
}
