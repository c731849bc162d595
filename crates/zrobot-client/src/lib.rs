//! A typed async client of the zrobot REST API (0-robot compatible), used by
//! the CLI and by proxies of remote services.
//!
//! # Layout
//!
//! - [`wire`]: the JSON bodies, shared with the server so the two cannot drift.
//! - [`Client`]: one method per endpoint. Clones share one connection pool,
//!   so keep one client per process and derive others with
//!   [`Client::with_credentials`].
//! - [`Credentials`]: what the robot is told about the caller.

mod events;
pub mod wire;

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

pub use events::{EventStream, EventsQuery};
pub use wire::*;

/// The header names of 0-robot's credentials.
pub const ADMIN_HEADER: &str = "ZrobotAdmin";
pub const USER_HEADER: &str = "ZrobotUser";
pub const SECRET_HEADER: &str = "ZrobotSecret";
/// Makes a retried `POST .../task_list` return the task of the first try.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The guid of the task whose action schedules this one.
pub const CALLER_TASK_HEADER: &str = "X-Zrobot-Caller-Task";

/// The most service secrets one request carries: a robot refuses a
/// `ZrobotSecret` header listing more, so [`Client::services`] sends a longer
/// list in batches of this many.
pub const MAX_SECRETS_PER_REQUEST: usize = 256;

/// How long a request may take, beyond the wait it asks for.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest single long poll: shorter than the idle timeouts of most proxies.
const LONG_POLL: Duration = Duration::from_secs(30);

/// Why a request failed. Each names the URL it was sent to.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The robot answered with an error body.
    #[error("{method} {url}: the robot answered {code}: {message}")]
    Api {
        method: Method,
        url: String,
        /// The HTTP status.
        code: u16,
        message: String,
    },
    /// The robot could not be reached, or the connection broke.
    #[error(
        "{method} {url}: cannot reach the robot ({source}); check its address and that it runs"
    )]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not what the API defines.
    #[error("{method} {url}: unexpected answer ({detail}); is this the address of a zrobot?")]
    Decode {
        method: Method,
        url: String,
        detail: String,
    },
    #[error("invalid robot address `{url}` ({reason}); give one like http://127.0.0.1:6600")]
    InvalidUrl { url: String, reason: String },
    /// The robot answered with a redirect. It is never followed: the
    /// credentials were configured for this address, not for the one the
    /// answer points to.
    #[error(
        "{method} {url}: the robot answered {code}, redirecting to {location}; redirects are not \
         followed, so that credentials never leave the address they were configured for: \
         configure the final URL of the robot instead"
    )]
    Redirect {
        method: Method,
        url: String,
        code: u16,
        /// The `Location` of the answer, as given (empty when absent).
        location: String,
    },
}

impl ClientError {
    /// The HTTP status the robot answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The robot's own message when it answered with an error.
    pub fn message(&self) -> Option<&str> {
        match self {
            ClientError::Api { message, .. } => Some(message),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// What the client presents to the robot.
#[derive(Clone, Default)]
pub struct Credentials {
    /// A JWT with the admin organization's scope, sent as `ZrobotAdmin`.
    pub admin_jwt: Option<String>,
    /// A JWT with the user organization's scope, sent as `ZrobotUser`.
    pub user_jwt: Option<String>,
    /// Secrets of services, sent together as `ZrobotSecret`.
    pub secrets: Vec<String>,
    /// The robot's god token: grants everything and shows service data.
    pub god_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    // Credentials end up in logs through `Debug`; the tokens must not.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("admin_jwt", &self.admin_jwt.is_some())
            .field("user_jwt", &self.user_jwt.is_some())
            .field("secrets", &self.secrets.len())
            .field("god_token", &self.god_token.is_some())
            .finish()
    }
}

impl Credentials {
    pub fn admin(jwt: impl Into<String>) -> Credentials {
        Credentials {
            admin_jwt: Some(jwt.into()),
            ..Default::default()
        }
    }

    pub fn user(jwt: impl Into<String>) -> Credentials {
        Credentials {
            user_jwt: Some(jwt.into()),
            ..Default::default()
        }
    }

    pub fn secrets(secrets: impl IntoIterator<Item = impl Into<String>>) -> Credentials {
        Credentials {
            secrets: secrets.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    pub fn god(token: impl Into<String>) -> Credentials {
        Credentials {
            god_token: Some(token.into()),
            ..Default::default()
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, token: &str| {
            // A token that is not a valid header value cannot be sent at all;
            // leaving it out makes the robot answer 401, which says enough.
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                let mut v = v;
                v.set_sensitive(true);
                h.insert(name, v);
            }
        };
        match (&self.god_token, &self.admin_jwt) {
            (Some(god), _) => put(ADMIN_HEADER, god),
            (None, Some(jwt)) => put(ADMIN_HEADER, jwt),
            (None, None) => {}
        }
        if let Some(jwt) = &self.user_jwt {
            put(USER_HEADER, jwt);
        }
        if !self.secrets.is_empty() {
            put(SECRET_HEADER, &self.secrets.join(" "));
        }
        h
    }
}

/// A client of one robot. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    /// How long a request may take, beyond the wait it asks for.
    timeout: Duration,
}

/// What a schedule request tells beyond the action: see [`Client::schedule_with`].
#[derive(Debug, Clone, Default)]
pub struct ScheduleOptions {
    /// A retried request with the same key returns the first one's task.
    pub idempotency_key: Option<String>,
    /// The guid of the task (here or on another robot) asking.
    pub caller_task: Option<String>,
    /// The W3C `traceparent` of the chain.
    pub traceparent: Option<String>,
}

impl Client {
    /// A client of the robot at `url` (`http://host:port` or `https://...`).
    pub fn new(url: &str, credentials: Credentials) -> Result<Client> {
        Client::build(url, credentials, None)
    }

    /// A client that also trusts the certificates of `pem_bundle`: for a
    /// robot serving HTTPS with a self-signed or private CA's certificate.
    pub fn with_root_certificates(
        url: &str,
        credentials: Credentials,
        pem_bundle: &[u8],
    ) -> Result<Client> {
        Client::build(url, credentials, Some(pem_bundle))
    }

    fn build(url: &str, credentials: Credentials, roots: Option<&[u8]>) -> Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let mut base = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme `{}` is neither http nor https",
                base.scheme()
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut builder = reqwest::Client::builder()
            // reqwest strips only `Authorization` on a cross-origin redirect;
            // our credentials travel in headers of their own, so a redirect
            // would hand them to whatever host the answer names.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(pem) = roots {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| invalid(format!("the root certificates do not parse as PEM: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            credentials,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client with another bound on each request (beyond the wait a
    /// long poll asks for): a robot that stopped answering fails calls in
    /// that time rather than the default minute.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    /// The same robot and connection pool, other credentials.
    pub fn with_credentials(&self, credentials: Credentials) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            credentials,
            timeout: self.timeout,
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The same robot, connection pool and tokens, presenting only `secrets`
    /// as service secrets: each request should carry the secret of the
    /// service it addresses and no other.
    pub fn with_secrets(&self, secrets: Vec<String>) -> Client {
        let mut c = self.clone();
        c.credentials.secrets = secrets;
        c
    }

    /// Adds a service secret to those sent.
    pub fn add_secret(&mut self, secret: impl Into<String>) {
        self.credentials.secrets.push(secret.into());
    }

    /// The robot's address.
    pub fn url(&self) -> &Url {
        &self.base
    }

    fn url_of(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.base.clone());
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends one request and returns the status and body of a 2xx answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>)> {
        self.send_with(method, path, query, body, timeout, HeaderMap::new())
            .await
    }

    async fn send_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        timeout: Duration,
        extra: HeaderMap,
    ) -> Result<(StatusCode, Vec<u8>)> {
        let url = self.url_of(path, query);
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .headers(self.credentials.headers())
            .headers(extra)
            .timeout(timeout);
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let transport = |source| ClientError::Transport {
            method: method.clone(),
            url: url.to_string(),
            source,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(ClientError::Redirect {
                method,
                url: url.to_string(),
                code: status.as_u16(),
                location,
            });
        }
        let bytes = resp.bytes().await.map_err(transport)?.to_vec();
        if status.is_success() {
            return Ok((status, bytes));
        }
        let message = match serde_json::from_slice::<wire::Error>(&bytes) {
            Ok(e) => e.message,
            Err(_) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        };
        Err(ClientError::Api {
            method,
            url: url.to_string(),
            code: status.as_u16(),
            message,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        self.call_within(method, path, query, body, self.timeout)
            .await
    }

    async fn call_within<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&(impl Serialize + ?Sized)>,
        timeout: Duration,
    ) -> Result<T> {
        self.call_with_headers(method, path, query, body, timeout, HeaderMap::new())
            .await
    }

    /// A request with headers of its own beyond the credentials.
    async fn call_with_headers<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&(impl Serialize + ?Sized)>,
        timeout: Duration,
        extra: HeaderMap,
    ) -> Result<T> {
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::Decode {
                method: method.clone(),
                url: self.url_of(path, query).to_string(),
                detail: format!("cannot encode the request body: {e}"),
            })?),
            None => None,
        };
        let (_, bytes) = self
            .send_with(method.clone(), path, query, body, timeout, extra)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            method,
            url: self.url_of(path, query).to_string(),
            detail: e.to_string(),
        })
    }

    /// A request whose success has no body (204).
    async fn call_empty(&self, method: Method, path: &str, body: Option<Value>) -> Result<()> {
        let body = body.map(|b| b.to_string().into_bytes());
        self.send(method, path, &[], body, self.timeout)
            .await
            .map(|_| ())
    }

    // --- robot ---

    /// `GET /graph`: the robot's pending work and what waits on what.
    pub async fn graph(&self) -> Result<Graph> {
        self.call(Method::GET, "graph", &[], None::<&()>).await
    }

    /// `GET /robot/info`.
    pub async fn robot_info(&self) -> Result<RobotInfo> {
        self.call(Method::GET, "robot/info", &[], None::<&()>).await
    }

    /// `GET /robot/metrics`.
    pub async fn robot_metrics(&self) -> Result<RobotMetrics> {
        self.call(Method::GET, "robot/metrics", &[], None::<&()>)
            .await
    }

    /// `GET /robot/webhooks`.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.call(Method::GET, "robot/webhooks", &[], None::<&()>)
            .await
    }

    /// `POST /robot/webhooks`: an `eco` webhook; the existing one if the URL is known.
    pub async fn add_webhook(&self, url: &str) -> Result<Webhook> {
        self.add_webhook_as(url, None).await
    }

    /// `POST /robot/webhooks` with a chat `format` (`slack`, `telegram`), or
    /// none for the eco as JSON.
    pub async fn add_webhook_as(&self, url: &str, format: Option<&str>) -> Result<Webhook> {
        let body = WebhookCreate {
            kind: "eco".to_owned(),
            url: url.to_owned(),
            format: format.map(str::to_owned),
        };
        self.call(Method::POST, "robot/webhooks", &[], Some(&body))
            .await
    }

    /// `DELETE /robot/webhooks/{id}`.
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        self.call_empty(Method::DELETE, &format!("robot/webhooks/{}", seg(id)), None)
            .await
    }

    /// `GET /metrics`: Prometheus text.
    pub async fn prometheus_metrics(&self) -> Result<String> {
        let (_, bytes) = self
            .send(Method::GET, "metrics", &[], None, REQUEST_TIMEOUT)
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    // --- templates and blueprints ---

    /// `GET /templates`.
    pub async fn templates(&self) -> Result<Vec<Template>> {
        self.call(Method::GET, "templates", &[], None::<&()>).await
    }

    /// `POST /templates`: clones a template repository.
    pub async fn add_template_repo(&self, repo: &TemplateRepository) -> Result<Vec<Template>> {
        self.call(Method::POST, "templates", &[], Some(repo)).await
    }

    /// `PUT /templates`: checks out another ref of a template repository.
    pub async fn checkout_template_repo(&self, repo: &TemplateRepository) -> Result<()> {
        let body = serde_json::to_value(repo).unwrap_or(Value::Null);
        self.call_empty(Method::PUT, "templates", Some(body)).await
    }

    /// `PUT /templates?report=true`: checks out another ref of a template
    /// repository and tells what happened to each service.
    pub async fn checkout_template_repo_report(
        &self,
        repo: &TemplateRepository,
    ) -> Result<CheckoutReport> {
        self.call(Method::PUT, "templates", &[("report", "true")], Some(repo))
            .await
    }

    /// `POST /blueprints`.
    pub async fn execute_blueprint(&self, content: Value) -> Result<BlueprintResult> {
        self.call(
            Method::POST,
            "blueprints",
            &[],
            Some(&Blueprint { content }),
        )
        .await
    }

    // --- services ---

    /// `GET /services`: the services the caller may see that match `filter`.
    /// More than [`MAX_SECRETS_PER_REQUEST`] secrets go in several requests,
    /// whose answers are merged (each service once, in the order first seen).
    pub async fn services(&self, filter: &ServiceFilter) -> Result<Vec<Service>> {
        let pairs = filter.pairs();
        let secrets = &self.credentials.secrets;
        if secrets.len() <= MAX_SECRETS_PER_REQUEST {
            return self
                .call(Method::GET, "services", &pairs, None::<&()>)
                .await;
        }
        let mut seen = std::collections::HashSet::new();
        let mut all = Vec::new();
        for batch in secrets.chunks(MAX_SECRETS_PER_REQUEST) {
            let found: Vec<Service> = self
                .with_secrets(batch.to_vec())
                .call(Method::GET, "services", &pairs, None::<&()>)
                .await?;
            all.extend(found.into_iter().filter(|s| seen.insert(s.guid)));
        }
        Ok(all)
    }

    /// `POST /services`. Keep the returned `secret`: it is shown only once.
    pub async fn create_service(&self, req: &ServiceCreate) -> Result<ServiceCreated> {
        self.call(Method::POST, "services", &[], Some(req)).await
    }

    /// `GET /services/{guid}`.
    pub async fn service(&self, guid: Uuid) -> Result<Service> {
        self.call(Method::GET, &format!("services/{guid}"), &[], None::<&()>)
            .await
    }

    /// `DELETE /services/{guid}`.
    pub async fn delete_service(&self, guid: Uuid) -> Result<()> {
        self.call_empty(Method::DELETE, &format!("services/{guid}"), None)
            .await
    }

    /// `DELETE /services/{guid}?report=true`: deletes a service and tells
    /// which of its `on_delete` actions failed.
    pub async fn delete_service_report(&self, guid: Uuid) -> Result<ServiceDeleted> {
        self.call(
            Method::DELETE,
            &format!("services/{guid}"),
            &[("report", "true")],
            None::<&()>,
        )
        .await
    }

    /// `DELETE /services/{guid}/state/{category}[/{tag}]`: removes a tag, or
    /// a whole category, from a service's state table.
    pub async fn clear_state(&self, guid: Uuid, category: &str, tag: Option<&str>) -> Result<()> {
        // Category and tag are the caller's text: percent-encoded as path
        // segments, relative to the robot's address.
        let mut scratch = Url::parse("http://segments/").expect("a valid URL");
        if let Ok(mut segments) = scratch.path_segments_mut() {
            segments.extend(["services", &guid.to_string(), "state", category]);
            if let Some(t) = tag {
                segments.push(t);
            }
        }
        let path = scratch.path().trim_start_matches('/').to_owned();
        self.call_empty(Method::DELETE, &path, None).await
    }

    /// `GET /services/{guid}/actions`.
    pub async fn actions(&self, guid: Uuid) -> Result<Vec<Action>> {
        self.call(
            Method::GET,
            &format!("services/{guid}/actions"),
            &[],
            None::<&()>,
        )
        .await
    }

    /// `GET /services/{guid}/logs`.
    pub async fn logs(&self, guid: Uuid) -> Result<Logs> {
        self.call(
            Method::GET,
            &format!("services/{guid}/logs"),
            &[],
            None::<&()>,
        )
        .await
    }

    // --- task lists ---

    /// `GET /services/{guid}/task_list`: waiting and running tasks; finished too with `all`.
    pub async fn tasks(&self, guid: Uuid, all: bool) -> Result<Vec<Task>> {
        let query: &[(&str, &str)] = if all { &[("all", "true")] } else { &[] };
        self.call(
            Method::GET,
            &format!("services/{guid}/task_list"),
            query,
            None::<&()>,
        )
        .await
    }

    /// `POST /services/{guid}/task_list`: returns once the task is durable.
    pub async fn schedule(&self, guid: Uuid, action: &str, args: Value) -> Result<Task> {
        self.schedule_with(guid, action, args, &ScheduleOptions::default())
            .await
    }

    /// `POST /services/{guid}/task_list` telling who asks, and with a key
    /// that makes a retry safe (see [`ScheduleOptions`]).
    pub async fn schedule_with(
        &self,
        guid: Uuid,
        action: &str,
        args: Value,
        options: &ScheduleOptions,
    ) -> Result<Task> {
        let mut extra = HeaderMap::new();
        let mut put = |name: &'static str, value: &Option<String>| {
            if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                extra.insert(name, v);
            }
        };
        put(IDEMPOTENCY_HEADER, &options.idempotency_key);
        put(CALLER_TASK_HEADER, &options.caller_task);
        put("traceparent", &options.traceparent);
        let body = TaskCreate {
            action_name: action.to_owned(),
            args,
        };
        self.call_with_headers(
            Method::POST,
            &format!("services/{guid}/task_list"),
            &[],
            Some(&body),
            self.timeout,
            extra,
        )
        .await
    }

    /// `GET /services/{guid}/task_list/{task}`.
    pub async fn task(&self, guid: Uuid, task: Uuid) -> Result<Task> {
        self.call(
            Method::GET,
            &format!("services/{guid}/task_list/{task}"),
            &[],
            None::<&()>,
        )
        .await
    }

    /// `GET /services/{guid}/task_list/{task}?wait=SECONDS`: answers as soon
    /// as the task is done, or when `wait` has passed (the task is then not done).
    pub async fn wait_task(&self, guid: Uuid, task: Uuid, wait: Duration) -> Result<Task> {
        let secs = format!("{}", wait.as_secs_f64());
        self.call_within(
            Method::GET,
            &format!("services/{guid}/task_list/{task}"),
            &[("wait", &secs)],
            None::<&()>,
            wait + self.timeout,
        )
        .await
    }

    /// Follows a task with long polls until it is done or `limit` has
    /// passed; returns the task as last seen (not done if `limit` passed first).
    pub async fn wait_done(&self, guid: Uuid, task: Uuid, limit: Duration) -> Result<Task> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let seen = self.wait_task(guid, task, left.min(LONG_POLL)).await?;
            if seen.state.is_done() || left.is_zero() {
                return Ok(seen);
            }
        }
    }

    /// `GET /services/{guid}/task_list/{task}/chain`: what blocks the task,
    /// followed across robots; `visited` are the tasks already on the chain
    /// (the robot says `cycle` when it comes back to one).
    pub async fn wait_chain(&self, guid: Uuid, task: Uuid, visited: &[Uuid]) -> Result<WaitChain> {
        let visited = visited
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.call(
            Method::GET,
            &format!("services/{guid}/task_list/{task}/chain"),
            &[("visited", &visited)],
            None::<&()>,
        )
        .await
    }

    /// `DELETE /services/{guid}/task_list/{task}`: cancels a waiting task.
    pub async fn cancel_task(&self, guid: Uuid, task: Uuid) -> Result<()> {
        self.call_empty(
            Method::DELETE,
            &format!("services/{guid}/task_list/{task}"),
            None,
        )
        .await
    }
}

/// Percent-encodes one path segment.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_under_a_base_path() {
        let c = Client::new("http://127.0.0.1:6600/api", Credentials::default()).unwrap();
        assert_eq!(
            c.url_of("services/x/task_list", &[("all", "true")])
                .as_str(),
            "http://127.0.0.1:6600/api/services/x/task_list?all=true"
        );
        assert!(matches!(
            Client::new("ftp://x", Credentials::default()),
            Err(ClientError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn credentials_become_headers() {
        let mut c = Credentials::secrets(["a", "b"]);
        c.user_jwt = Some("u".into());
        let h = c.headers();
        assert_eq!(h[SECRET_HEADER], "Bearer a b");
        assert_eq!(h[USER_HEADER], "Bearer u");
        assert!(h.get(ADMIN_HEADER).is_none());
        let h = Credentials::god("g").headers();
        assert_eq!(h[ADMIN_HEADER], "Bearer g");
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }
}
