//! Shared harness of the API tests: a real robot (Lua engine, in-memory
//! store, a template repository written into a temp dir) served with
//! `zrobot_api::serve` on 127.0.0.1:0, JWTs signed with a key file in the
//! temp dir, raw requests, and a small webhook receiver.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zrobot_api::{ApiConfig, AuthConfig};
use zrobot_client::{Client, Credentials};
use zrobot_core::store::MemoryStore;
use zrobot_core::{RepoId, Robot, RobotConfig};
use zrobot_lua::{LuaConfig, LuaEngine};

pub const NODE_YAML: &str = r#"
version: 1.2.0
description: a node for the API tests
data:
  type: object
  required: [hostname]
  properties:
    hostname: {type: string}
    port: {type: integer, default: 22}
actions:
  create_vm:
    args:
      type: object
      required: [name]
      properties: {name: {type: string}, memory: {type: integer, default: 1024}}
"#;

pub const NODE_LUA: &str = r#"
local node = {}

function node.echo(self, args) return args end

function node.fail(self, args) error("boom on purpose") end

function node.slow(self, args)
  robot.sleep(args.secs or 0.3)
  return {slept = args.secs or 0.3}
end

function node.create_vm(self, args) return {ip = "10.0.0.1", memory = args.memory} end

function node.mark(self)
  self.state:set("network", "tcp-22", "ok")
  self.log:info("marked")
end

function node.nothing(self) end

return node
"#;

pub const SIGNING_KEY: &[u8] = b"the HS256 key of the API tests";
pub const ADMIN_ORG: &str = "admins";
pub const USER_ORG: &str = "users";
pub const GOD: &str = "god-token-of-the-api-tests";

/// How the robot under test authenticates.
#[derive(Clone, Copy, PartialEq)]
pub enum Auth {
    /// No JWT key: open, with a god token.
    Open,
    /// HS256 key file, admin and user organizations, and a god token.
    Jwt,
}

pub struct TestRobot {
    pub robot: Robot,
    pub addr: SocketAddr,
    pub url: String,
    /// A client without credentials.
    pub client: Client,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _repo: tempfile::TempDir,
    _keys: tempfile::TempDir,
}

impl TestRobot {
    pub async fn start(auth: Auth) -> TestRobot {
        TestRobot::start_with(auth, |_| {}).await
    }

    pub async fn start_with(auth: Auth, tune: impl FnOnce(&mut ApiConfig)) -> TestRobot {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join("templates").join("node");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("template.yaml"), NODE_YAML).unwrap();
        std::fs::write(dir.join("node.lua"), NODE_LUA).unwrap();
        let robot = Robot::new(
            RobotConfig::default(),
            Arc::new(LuaEngine::new(LuaConfig::default())),
            Arc::new(MemoryStore::new()),
        );
        let load =
            robot.load_repository(repo.path(), &RepoId::new("github.com", "acme", "templates"));
        assert!(load.errors.is_empty(), "template errors: {:?}", load.errors);

        let keys = tempfile::tempdir().unwrap();
        let key_file = keys.path().join("jwt.key");
        std::fs::write(&key_file, SIGNING_KEY).unwrap();
        let auth = match auth {
            Auth::Open => AuthConfig {
                god_token: Some(GOD.to_owned()),
                ..AuthConfig::default()
            },
            Auth::Jwt => AuthConfig {
                jwt_key_file: Some(key_file),
                admin_organization: Some(ADMIN_ORG.to_owned()),
                user_organization: Some(USER_ORG.to_owned()),
                god_token: Some(GOD.to_owned()),
            },
        };
        let mut config = ApiConfig {
            auth,
            ..ApiConfig::default()
        };
        tune(&mut config);
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(zrobot_api::serve(listener, robot.clone(), config, async {
            let _ = stopped.await;
        }));
        let url = format!("{scheme}://{addr}");
        let client =
            Client::with_root_certificates(&url, Credentials::default(), &fixture("tls-cert.pem"))
                .unwrap();
        TestRobot {
            robot,
            addr,
            url,
            client,
            http: reqwest::Client::builder()
                .tls_certs_merge(
                    reqwest::Certificate::from_pem_bundle(&fixture("tls-cert.pem")).unwrap(),
                )
                .build()
                .unwrap(),
            stop: Some(stop),
            server: Some(server),
            _repo: repo,
            _keys: keys,
        }
    }

    pub fn as_(&self, credentials: Credentials) -> Client {
        self.client.with_credentials(credentials)
    }

    pub fn god(&self) -> Client {
        self.as_(Credentials::god(GOD))
    }

    pub fn admin(&self) -> Client {
        self.as_(Credentials::admin(admin_jwt()))
    }

    /// Stops the server and waits for `serve` to return, within `limit`.
    pub async fn stop_within(&mut self, limit: Duration) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = self.server.take().expect("stopped once");
        tokio::time::timeout(limit, server)
            .await
            .expect("serve returned in time")
            .expect("serve did not panic")
    }

    /// Sends a raw request; returns the status, the headers and the body
    /// (JSON, or a JSON string of the text when it is not JSON). A body goes
    /// as `application/json`.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut all = headers.to_vec();
        if body.is_some() {
            all.push(("content-type", "application/json".to_owned()));
        }
        self.raw_exact(method, path, &all, body).await
    }

    /// Sends a raw request with exactly these headers (no content type is
    /// added for the body).
    pub async fn raw_exact(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.url),
        );
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        self.answer(req).await
    }

    async fn answer(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, body)
    }
}

impl Drop for TestRobot {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A JWT signed with the robot's key.
pub fn jwt(scope: Value, expires_in: i64) -> String {
    zrobot_testkit::jwt::sign(SIGNING_KEY, scope, expires_in, "tester")
}

pub fn admin_jwt() -> String {
    jwt(json!([format!("user:memberof:{ADMIN_ORG}")]), 3600)
}

pub fn user_jwt() -> String {
    // A space-separated scope string, as some identity providers send.
    jwt(json!(format!("openid user:memberof:{USER_ORG}")), 3600)
}

#[allow(unused_imports)]
pub use zrobot_testkit::eventually_async;

/// A webhook receiver on loopback: records every POSTed JSON body; answers
/// 500 to the first `fail_first` requests.
pub struct WebhookReceiver {
    pub url: String,
    pub bodies: mpsc::UnboundedReceiver<Value>,
    _server: JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start(fail_first: usize) -> WebhookReceiver {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let tx = tx.clone();
                let seen = seen.clone();
                async move {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    if n < fail_first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver {
            url,
            bodies: rx,
            _server: server,
        }
    }

    pub async fn next(&mut self, limit: Duration) -> Value {
        tokio::time::timeout(limit, self.bodies.recv())
            .await
            .expect("a webhook arrived in time")
            .expect("the receiver runs")
    }
}
