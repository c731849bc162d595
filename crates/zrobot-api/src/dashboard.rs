//! The web pages a robot serves: the dashboard at `/` and the OpenAPI
//! viewer at `/apidocs`, their files embedded in the binary.
//!
//! Both are static: every figure they show comes from the REST API and
//! `GET /events`, with the credentials the user pastes into the page (kept in
//! the tab's session storage, sent as headers, never in a URL). So serving
//! them grants nothing: they are the same to every caller, and a robot
//! without a credential shows what an anonymous caller may see.
//!
//! Each answer forbids what a page of someone else could do with them: the
//! scripts come only from the robot itself (no inline script, no `eval`),
//! they may fetch only the robot, and no other site may frame them.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The dashboard's policy: scripts, styles and fetches from the robot only.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Swagger UI sets style attributes from its scripts, so it needs inline
/// styles; its scripts still come from the robot only.
const APIDOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    csp: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const fn asset(body: &'static [u8], content_type: &'static str, csp: &'static str) -> Asset {
    Asset {
        body,
        content_type,
        csp,
    }
}

/// Every page and file, by path.
const ASSETS: [(&str, Asset); 7] = [
    (
        "/",
        asset(
            include_bytes!("../assets/dashboard/index.html"),
            HTML,
            DASHBOARD_CSP,
        ),
    ),
    (
        "/dashboard/app.js",
        asset(
            include_bytes!("../assets/dashboard/app.js"),
            JS,
            DASHBOARD_CSP,
        ),
    ),
    (
        "/dashboard/app.css",
        asset(
            include_bytes!("../assets/dashboard/app.css"),
            CSS,
            DASHBOARD_CSP,
        ),
    ),
    (
        "/apidocs/",
        asset(
            include_bytes!("../assets/apidocs/index.html"),
            HTML,
            APIDOCS_CSP,
        ),
    ),
    (
        "/apidocs/init.js",
        asset(include_bytes!("../assets/apidocs/init.js"), JS, APIDOCS_CSP),
    ),
    (
        "/apidocs/swagger-ui-bundle.js",
        asset(
            include_bytes!("../assets/apidocs/swagger-ui/swagger-ui-bundle.js"),
            JS,
            APIDOCS_CSP,
        ),
    ),
    (
        "/apidocs/swagger-ui.css",
        asset(
            include_bytes!("../assets/apidocs/swagger-ui/swagger-ui.css"),
            CSS,
            APIDOCS_CSP,
        ),
    ),
];

fn answer(asset: &'static Asset) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(asset.csp)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        // A new binary may bring new files under the same names.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, asset.body).into_response()
}

/// The routes of the pages, outside the OpenAPI document (they are not API).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/apidocs", get(|| async { Redirect::to("/apidocs/") }));
    for (path, asset) in &ASSETS {
        router = router.route(path, get(move || async move { answer(asset) }));
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_names_only_files_that_are_served() {
        let served: Vec<&str> = ASSETS.iter().map(|(p, _)| *p).collect();
        for (path, asset) in &ASSETS {
            if !asset.content_type.starts_with("text/html") {
                continue;
            }
            let page = std::str::from_utf8(asset.body).unwrap();
            for attr in ["src=\"", "href=\""] {
                for part in page.split(attr).skip(1) {
                    let link = part.split('"').next().unwrap();
                    if link.starts_with("data:")
                        || link.starts_with('#')
                        || link.starts_with("http")
                    {
                        continue;
                    }
                    assert!(
                        served.contains(&link) || link == "/apidocs",
                        "{path} links to {link}, which is not served"
                    );
                }
            }
            assert!(
                !page.contains("<script>"),
                "{path} has an inline script, which its policy refuses"
            );
        }
    }
}
