//! The REST API of a robot, compatible with 0-robot's: routes, credentials,
//! metrics and webhooks over a [`zrobot_core::Robot`].
//!
//! # Layout
//!
//! - [`serve`]: runs the API on a listener until a shutdown future resolves;
//!   tests start it on port 0.
//! - `routes/`: one module per branch of the URL tree (`robot`, `templates`,
//!   `services`, `tasks`, `blueprints`, `metrics`), each handler annotated for
//!   the OpenAPI document served at `/openapi.json`.
//! - [`wire`]: the JSON bodies (owned by `zrobot-client`, so that the client
//!   and the server share them) and how core types become them.
//! - [`auth`]: who a request comes from (JWTs, service secrets, god token)
//!   and what that grants.
//! - [`error`]: the one error type, rendered as `{code, message}`.
//! - [`guard`]: the front door, refusing what a web page could make a
//!   browser send (simple cross-site requests, foreign origins, rebound
//!   host names) before any handler runs; CORS only for allowed origins.
//! - `metrics`, `webhooks`, `host`: Prometheus figures, eco webhooks, and the
//!   host's CPU and memory for `/robot/metrics`.
//! - `tls`: HTTPS served natively (rustls).
//! - `dashboard`: the web dashboard at `/` and the API viewer at `/apidocs`,
//!   static files embedded in the binary (`assets/`).
//!
//! Only this crate knows HTTP on the server side; the core never sees it.

pub mod auth;
mod dashboard;
pub mod error;
mod extract;
pub mod guard;
mod host;
mod metrics;
pub mod repos;
mod routes;
mod tls;
mod webhooks;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use zrobot_core::Robot;

pub use auth::{AuthConfig, AuthConfigError};
pub use error::ApiError;
pub use tls::{TlsConfig, TlsError};

/// How the API is served.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub auth: AuthConfig,
    /// The largest request body accepted; larger ones get 413.
    pub body_limit: usize,
    /// The longest `?wait=` a task request may ask for.
    pub max_wait: Duration,
    /// Serve an open robot (no authentication) on addresses other than
    /// loopback. Without it, such a robot refuses to start.
    pub insecure: bool,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Template and data repositories (git), when the robot has them.
    pub repos: repos::Repos,
    /// Web origins (`scheme://host[:port]`) allowed to send changing
    /// requests and to read answers (CORS). None by default.
    pub allowed_origins: Vec<String>,
    /// The robot's data directory, whose filesystem `/metrics` tells.
    pub data_dir: Option<std::path::PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            auth: AuthConfig::default(),
            body_limit: 1024 * 1024,
            max_wait: Duration::from_secs(600),
            insecure: false,
            tls: None,
            repos: repos::Repos::default(),
            allowed_origins: Vec::new(),
            data_dir: None,
        }
    }
}

/// Why the API cannot start with its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Origin(#[from] guard::OriginError),
    #[error("the robot has no authentication and would listen on {0}, which is not loopback: listen on 127.0.0.1, configure --jwt-key with an organization, or pass --insecure")]
    OpenOnNetwork(SocketAddr),
}

impl ApiConfig {
    /// Checks the configuration for serving on `addr`, reading the JWT key
    /// and TLS files.
    pub fn check(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        self.prepare(addr).map(|_| ())
    }

    fn prepare(
        &self,
        addr: SocketAddr,
    ) -> Result<(auth::Auth, guard::Guard, Option<tokio_rustls::TlsAcceptor>), ConfigError> {
        let auth = auth::Auth::new(&self.auth)?;
        if self.auth.is_open() && !self.insecure && !addr.ip().is_loopback() {
            return Err(ConfigError::OpenOnNetwork(addr));
        }
        let guard = guard::Guard::new(
            addr,
            self.tls.is_some(),
            self.auth.is_open(),
            &self.allowed_origins,
        )?;
        let tls = self.tls.as_ref().map(tls::acceptor).transpose()?;
        Ok((auth, guard, tls))
    }
}

/// What every handler reaches.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    robot: Robot,
    config: ApiConfig,
    auth: auth::Auth,
    guard: guard::Guard,
    metrics: metrics::Metrics,
    webhooks: webhooks::Webhooks,
    host: host::HostFigures,
    /// Turns true when the API shuts down, ending long polls.
    stopping: watch::Receiver<bool>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// A URL fit for logs and anonymous answers: whatever user part it has (a
/// password, or a token given as the user name) is dropped. Text that is not
/// a `scheme://` URL (`git@host:path`, a local path) holds no credentials
/// and is returned as given.
pub(crate) fn url_without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            // A URL with a user part has a host, so neither setter fails.
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes::api().into_openapi();
    routes::document_common_errors(&mut doc);
    doc
}

/// Serves the API on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (long polls end at once) and stops the webhook
/// deliveries. Registers the metrics and webhook observers on `robot`: call
/// it once per robot.
pub async fn serve(
    listener: TcpListener,
    robot: Robot,
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (auth, guard, tls) = config
        .prepare(listener.local_addr()?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let metrics = metrics::Metrics::new(config.data_dir.clone());
    robot.add_observer(Arc::new(metrics.clone()));
    let (webhooks, deliveries) = webhooks::Webhooks::start(&robot);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let state = AppState(Arc::new(Shared {
        robot,
        auth,
        guard,
        metrics,
        webhooks,
        host: host::HostFigures::default(),
        stopping: stop_rx.clone(),
        config,
    }));
    let app = router(state);
    let mut stopped = stop_rx;
    let deliveries = tokio::spawn(deliveries.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let stop = stop_tx.clone();
    let shutdown = async move {
        shutdown.await;
        stop.send_replace(true);
    };
    let served = match tls {
        Some(acceptor) => {
            let listener = tls::TlsListener::new(listener, acceptor)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            // Small answers must not wait on Nagle's algorithm.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    stop_tx.send_replace(true);
    if let Err(e) = deliveries.await {
        tracing::error!(error = %e, "the webhook delivery task failed");
    }
    served
}

fn router(state: AppState) -> Router {
    let (api, mut openapi) = routes::api().split_for_parts();
    routes::document_common_errors(&mut openapi);
    let openapi = Arc::new(openapi.to_json().unwrap_or_else(|_| "{}".to_owned()));
    api.merge(dashboard::routes()).route(
        "/openapi.json",
        get(move || {
            let doc = openapi.clone();
            async move { ([(CONTENT_TYPE, "application/json")], doc.as_ref().clone()) }
        }),
    )
    .fallback(|| async {
        ApiError::not_found("no such endpoint; GET /openapi.json lists them").into_response()
    })
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this endpoint does not answer that method; GET /openapi.json lists the methods of each",
        )
        .into_response()
    })
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        guard::front_door,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        metrics::track_http,
    ))
    .layer(DefaultBodyLimit::max(state.config.body_limit))
    .with_state(state)
}
