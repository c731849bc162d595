//! The attacks on the API's front door, one test each, every one performed
//! against a real robot on a loopback port: a test fails if its attack
//! works.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{json, Value};
use zrobot_api::repos::{BoxFuture, RepoError, Repos, TemplateRepositories};
use zrobot_client::{Credentials, ServiceCreate, SECRET_HEADER, USER_HEADER};
use zrobot_core::Template;

const EVIL: &str = "http://evil.example";

fn node(name: &str, public: bool) -> ServiceCreate {
    ServiceCreate {
        template: "node".into(),
        name: name.into(),
        data: json!({"hostname": "h"}),
        public,
    }
}

fn service_body(name: &str) -> Vec<u8> {
    json!({"template": "node", "name": name, "data": {"hostname": "h"}})
        .to_string()
        .into_bytes()
}

/// A page on evil.example posts a "simple" request (no preflight) to an
/// open robot: `text/plain`, a form, or multipart, with a JSON body; it
/// must not create a service (so no `init` runs), add a repository, run a
/// blueprint or add a webhook. The refusal names the cause and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_simple_request_runs_nothing() {
    let t = TestRobot::start(Auth::Open).await;
    let webhook = WebhookReceiver::start(0).await;
    let bodies: [(&str, Vec<u8>); 4] = [
        ("/services", service_body("evil")),
        (
            "/templates",
            json!({"url": "https://github.com/acme/more.git"})
                .to_string()
                .into_bytes(),
        ),
        (
            "/blueprints",
            json!({"content": {"services": [{"node__evil2": {"hostname": "h"}}]}})
                .to_string()
                .into_bytes(),
        ),
        (
            "/robot/webhooks",
            json!({"kind": "eco", "url": webhook.url})
                .to_string()
                .into_bytes(),
        ),
    ];
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "Text/Plain",
        "application/x-www-form-urlencoded",
        "APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8",
        "multipart/form-data; boundary=----x",
    ] {
        for (path, body) in &bodies {
            for origin in [Some(EVIL), None] {
                let mut headers = vec![("content-type", content_type.to_owned())];
                if let Some(o) = origin {
                    headers.push(("origin", o.to_owned()));
                }
                let (status, h, answer) = t
                    .raw_exact("POST", path, &headers, Some(body.clone()))
                    .await;
                assert_eq!(status, 415, "POST {path} as {content_type}: {answer}");
                assert_eq!(answer["code"], 415);
                let message = answer["message"].as_str().unwrap();
                assert!(
                    message.contains("Content-Type: application/json"),
                    "{message}"
                );
                assert!(h.get("access-control-allow-origin").is_none());
            }
        }
    }
    // The same through PUT and DELETE.
    let created = t.client.create_service(&node("kept", false)).await.unwrap();
    let g = created.service.guid;
    for (method, path) in [
        ("PUT", "/templates".to_owned()),
        ("DELETE", format!("/services/{g}")),
    ] {
        let (status, _, answer) = t
            .raw_exact(
                method,
                &path,
                &[
                    ("content-type", "text/plain".into()),
                    ("origin", EVIL.into()),
                ],
                Some(b"{}".to_vec()),
            )
            .await;
        assert_eq!(status, 415, "{method} {path}: {answer}");
    }
    let names: Vec<String> = t
        .robot
        .find_services(&Default::default())
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["kept"], "the attack created services");
    assert!(t.god().webhooks().await.unwrap().is_empty());
}

/// A page sends a changing request without any body type (a browser sends
/// no `Content-Type` for a bare byte body, still without a preflight), or
/// from an opaque (`null`) origin: the foreign `Origin` is refused with
/// 403. The robot's own origin, and no `Origin` at all, pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_request_without_content_type_is_refused_by_origin() {
    let t = TestRobot::start(Auth::Open).await;
    for origin in [EVIL, "null", "http://127.0.0.1:1", "https://127.0.0.1"] {
        let (status, h, answer) = t
            .raw_exact(
                "POST",
                "/services",
                &[("origin", origin.to_owned())],
                Some(service_body("evil")),
            )
            .await;
        assert_eq!(status, 403, "{origin}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains(origin) && message.contains("--allow-origin"),
            "{message}"
        );
        assert!(h.get("access-control-allow-origin").is_none());
    }
    assert_eq!(t.robot.service_count(), 0);

    // A page the robot itself served is same-origin.
    let own = format!("http://{}", t.addr);
    let (status, _, answer) = t
        .raw_exact(
            "POST",
            "/services",
            &[("origin", own), ("content-type", "application/json".into())],
            Some(service_body("mine")),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    // Reading is not refused for an origin: the browser keeps the answer
    // from the page, as no CORS header allows it.
    let (status, h, _) = t
        .raw_exact("GET", "/services", &[("origin", EVIL.into())], None)
        .await;
    assert_eq!(status, 200);
    assert!(h.get("access-control-allow-origin").is_none());
}

/// A domain the attacker controls is rebound to 127.0.0.1, so the
/// attacker's page is same-origin with an open robot and could read and
/// change it. The browser still names the attacker's domain in `Host`: an
/// open robot answers only its own address and loopback names, with its
/// port. A robot with a JWT key answers any `Host` (it may be behind a name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_reaches_no_open_robot() {
    let t = TestRobot::start(Auth::Open).await;
    t.client.create_service(&node("n", false)).await.unwrap();
    let port = t.addr.port();
    for host in [
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("10.1.2.3:{port}"),
    ] {
        for (method, path, body) in [
            ("GET", "/services", None),
            ("GET", "/robot/info", None),
            ("GET", "/no/such/path", None),
            ("POST", "/services", Some(service_body("rebound"))),
        ] {
            let mut headers = vec![("host", host.clone())];
            if body.is_some() {
                headers.push(("content-type", "application/json".into()));
            }
            let (status, _, answer) = t.raw_exact(method, path, &headers, body).await;
            assert_eq!(status, 421, "{method} {path} with Host {host}: {answer}");
            let message = answer["message"].as_str().unwrap();
            assert!(
                message.contains(&host) && message.contains(&t.addr.to_string()),
                "{message}"
            );
        }
    }
    assert_eq!(
        t.robot.service_count(),
        1,
        "the rebound POST created a service"
    );
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("127.9.9.9:{port}"),
    ] {
        let (status, _, answer) = t
            .raw_exact("GET", "/services", &[("host", host.clone())], None)
            .await;
        assert_eq!(status, 200, "Host {host}: {answer}");
    }

    let jwt = TestRobot::start(Auth::Jwt).await;
    let (status, _, _) = jwt
        .raw_exact(
            "GET",
            "/robot/info",
            &[("host", "robot.example.com".into())],
            None,
        )
        .await;
    assert_eq!(status, 200);
}

/// CORS is explicit: by default no answer carries `Access-Control-Allow-*`
/// and a preflight gets no permission; `--allow-origin` allows exactly the
/// origins it names, for the origin check and for CORS. A bad value is
/// refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_granted_only_to_allowed_origins() {
    let preflight = |origin: &str| {
        vec![
            ("origin", origin.to_owned()),
            ("access-control-request-method", "POST".to_owned()),
            (
                "access-control-request-headers",
                "content-type, zrobotsecret".to_owned(),
            ),
        ]
    };
    let t = TestRobot::start(Auth::Open).await;
    let (status, h, _) = t
        .raw_exact("OPTIONS", "/services", &preflight(EVIL), None)
        .await;
    assert!(!status.is_success(), "{status}");
    assert!(h.keys().all(|k| !k.as_str().starts_with("access-control-")));
    for path in ["/services", "/robot/info", "/metrics"] {
        let (_, h, _) = t
            .raw_exact("GET", path, &[("origin", EVIL.into())], None)
            .await;
        assert!(h.keys().all(|k| !k.as_str().starts_with("access-control-")));
    }

    let dash = "https://dash.example:8443";
    let t = TestRobot::start_with(Auth::Open, |c| {
        c.allowed_origins = vec!["https://Dash.Example:8443".into()];
    })
    .await;
    let (status, h, _) = t
        .raw_exact("OPTIONS", "/services", &preflight(dash), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(h["access-control-allow-origin"], dash);
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("zrobotsecret"));
    let (status, h, answer) = t
        .raw_exact(
            "POST",
            "/services",
            &[
                ("origin", dash.into()),
                ("content-type", "application/json".into()),
            ],
            Some(service_body("from-dash")),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(h["access-control-allow-origin"], dash);
    // Still no simple content types, and other origins stay out.
    let (status, _, _) = t
        .raw_exact(
            "POST",
            "/services",
            &[
                ("origin", dash.into()),
                ("content-type", "text/plain".into()),
            ],
            Some(service_body("plain")),
        )
        .await;
    assert_eq!(status, 415);
    let (status, h, _) = t
        .raw_exact(
            "POST",
            "/services",
            &[("origin", EVIL.into())],
            Some(service_body("evil")),
        )
        .await;
    assert_eq!(status, 403);
    assert!(h.get("access-control-allow-origin").is_none());
    let (status, h, _) = t
        .raw_exact("OPTIONS", "/services", &preflight(EVIL), None)
        .await;
    assert!(!status.is_success());
    assert!(h.get("access-control-allow-origin").is_none());

    for bad in [
        "https://dash.example/app",
        "dash.example",
        "ftp://dash.example",
    ] {
        let config = zrobot_api::ApiConfig {
            allowed_origins: vec![bad.into()],
            ..Default::default()
        };
        let e = config
            .check("127.0.0.1:0".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains(bad) && e.contains("scheme://host[:port]"), "{e}");
    }
}

/// 0-robot's clients send JSON with no `Content-Type` or with
/// `application/json` (any charset), and no `Origin`: they keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_robot_clients_still_work() {
    let t = TestRobot::start(Auth::Open).await;
    for (i, content_type) in [
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON;charset=UTF-8"),
    ]
    .into_iter()
    .enumerate()
    {
        let headers: Vec<(&str, String)> = content_type
            .map(|c| vec![("content-type", c.to_owned())])
            .unwrap_or_default();
        let (status, _, answer) = t
            .raw_exact(
                "POST",
                "/services",
                &headers,
                Some(service_body(&format!("n{i}"))),
            )
            .await;
        assert_eq!(status, 201, "{content_type:?}: {answer}");
        let g = answer["guid"].as_str().unwrap().to_owned();
        let (status, _, answer) = t
            .raw_exact(
                "POST",
                &format!("/services/{g}/task_list"),
                &headers,
                Some(
                    json!({"action_name": "echo", "args": {}})
                        .to_string()
                        .into_bytes(),
                ),
            )
            .await;
        assert_eq!(status, 201, "{content_type:?}: {answer}");
        let (status, _, _) = t
            .raw_exact("DELETE", &format!("/services/{g}"), &[], None)
            .await;
        assert_eq!(status, 204);
    }
    // And the project's own client.
    let created = t
        .client
        .create_service(&node("client", false))
        .await
        .unwrap();
    let task = t
        .client
        .schedule(created.service.guid, "echo", json!({"x": 1}))
        .await
        .unwrap();
    assert_eq!(task.action_name, "echo");
}

/// Template and data repositories whose URLs carry credentials, handed to
/// the API as they are (as a careless seam would), to show what reaches an
/// anonymous caller of `GET /robot/info`.
struct RepoUrls {
    config: String,
    data: String,
}

impl TemplateRepositories for RepoUrls {
    fn add(
        &self,
        _url: String,
        _reference: Option<String>,
    ) -> BoxFuture<'static, Result<Vec<Arc<Template>>, RepoError>> {
        Box::pin(async { Err(RepoError::Invalid("not in this test".into())) })
    }

    fn checkout(
        &self,
        _url: String,
        _reference: Option<String>,
    ) -> BoxFuture<'static, Result<zrobot_client::wire::CheckoutReport, RepoError>> {
        Box::pin(async { Err(RepoError::Invalid("not in this test".into())) })
    }

    fn config_url(&self) -> String {
        self.config.clone()
    }

    fn data_repo(&self) -> (String, Option<String>) {
        (self.data.clone(), None)
    }
}

/// `--data-repo https://TOKEN@host/...` (a token without `user:`), and
/// passwords that are awkward for a text search (holding `@`, `:`, `/`,
/// `%40`, equal to the user name or to part of the host, empty): an
/// anonymous `GET /robot/info` shows none of them, and keeps the host and
/// path. scp-like URLs carry no secret and are shown as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_info_shows_no_repository_secret() {
    for (url, secret, shown) in [
        (
            "https://ghp_TOKEN1234@github.com/acme/data",
            "ghp_TOKEN1234",
            "https://github.com/acme/data",
        ),
        (
            "https://bot:s3cr3t@github.com/acme/data",
            "s3cr3t",
            "https://github.com/acme/data",
        ),
        (
            "https://bot:bot@github.com/acme/data",
            "bot",
            "https://github.com/acme/data",
        ),
        (
            "https://bot:github@github.com/acme/data",
            "bot:",
            "https://github.com/acme/data",
        ),
        (
            "https://bot:p@ss@github.com/acme/data",
            "p@ss",
            "https://github.com/acme/data",
        ),
        (
            "https://bot:a:b@github.com/acme/data",
            "a:b",
            "https://github.com/acme/data",
        ),
        (
            "https://bot:p%40ss@github.com/acme/data",
            "p%40ss",
            "https://github.com/acme/data",
        ),
        (
            "https://tok:@github.com/acme/data",
            "tok",
            "https://github.com/acme/data",
        ),
        (
            "ssh://git:pw@github.com/acme/data",
            ":pw",
            "ssh://github.com/acme/data",
        ),
        (
            "git@github.com:acme/data.git",
            "\u{0}",
            "git@github.com:acme/data.git",
        ),
    ] {
        let t = TestRobot::start_with(Auth::Jwt, |c| {
            c.repos = Repos(Some(Arc::new(RepoUrls {
                config: url.to_owned(),
                data: url.to_owned(),
            })));
        })
        .await;
        let (status, _, info) = t.raw("GET", "/robot/info", &[], None).await;
        assert_eq!(status, 200);
        let text = info.to_string();
        assert!(!text.contains(secret), "{url}: {text}");
        assert_eq!(info["repositories"]["data"]["url"], shown, "{url}");
        assert_eq!(info["repositories"]["config"]["url"], shown, "{url}");
    }
}

/// One anonymous request carries 40,000 secrets (each would cost a hash and
/// a lookup): refused with 431 naming the limit, before any work. So are a
/// header too large, and a single oversized secret (400). A request within
/// the limits still finds its one valid secret among the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_thousand_secrets_are_refused() {
    let t = TestRobot::start(Auth::Jwt).await;
    let own = t.god().create_service(&node("own", false)).await.unwrap();
    let g = own.service.guid;
    let path = format!("/services/{g}");

    let many = vec!["a"; 40_000].join(" ");
    let (status, _, answer) = t
        .raw(
            "GET",
            &path,
            &[(SECRET_HEADER, format!("Bearer {many}"))],
            None,
        )
        .await;
    // 80 KB: past the header's byte limit, named.
    assert_eq!(status, 431, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("32768"),
        "{answer}"
    );
    // Few bytes, but too many secrets: the count limit, named.
    let (status, _, answer) = t
        .raw(
            "GET",
            "/services",
            &[(
                SECRET_HEADER,
                format!("Bearer {}", vec!["s"; 257].join(" ")),
            )],
            None,
        )
        .await;
    assert_eq!(status, 431, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("256"),
        "{answer}"
    );
    let huge = "x".repeat(40_000);
    let (status, _, answer) = t
        .raw(
            "GET",
            "/services",
            &[(SECRET_HEADER, format!("Bearer {huge}"))],
            None,
        )
        .await;
    assert_eq!(status, 431, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("32768"),
        "{answer}"
    );
    let long = "x".repeat(300);
    let (status, _, answer) = t
        .raw(
            "GET",
            &path,
            &[(SECRET_HEADER, format!("Bearer {long}"))],
            None,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("256"),
        "{answer}"
    );

    // 255 wrong secrets and the right one: granted.
    let mut secrets: Vec<String> = (0..255).map(|i| format!("wrong{i}")).collect();
    secrets.push(own.secret.clone());
    let (status, _, answer) = t
        .raw(
            "GET",
            &path,
            &[(SECRET_HEADER, format!("Bearer {}", secrets.join(" ")))],
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["name"], "own");
}

/// `?wait=1e20` overflowed the conversion to a duration and panicked the
/// handler (the connection closed without an answer). It is capped at the
/// configured longest wait; negative, NaN and infinite waits get 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_wait_is_capped_not_a_panic() {
    let t = TestRobot::start_with(Auth::Open, |c| {
        c.max_wait = std::time::Duration::from_millis(200);
    })
    .await;
    let created = t.client.create_service(&node("n", false)).await.unwrap();
    let g = created.service.guid;
    // A task that stays running past the longest wait.
    let task = t
        .client
        .schedule(g, "slow", json!({"secs": 30}))
        .await
        .unwrap();
    for wait in ["1e20", "1e300", "18446744073709551616", "600"] {
        let (status, _, answer) = t
            .raw(
                "GET",
                &format!("/services/{g}/task_list/{}?wait={wait}", task.guid),
                &[],
                None,
            )
            .await;
        assert_eq!(status, 200, "wait={wait}: {answer}");
        assert_ne!(answer["state"], "ok", "wait={wait}: {answer}");
    }
    for wait in ["-1", "NaN", "inf", "-inf", "x"] {
        let (status, _, answer) = t
            .raw(
                "GET",
                &format!("/services/{g}/task_list/{}?wait={wait}", task.guid),
                &[],
                None,
            )
            .await;
        assert_eq!(status, 400, "wait={wait}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("wait"),
            "{answer}"
        );
    }
}

/// 300 requests with invented methods and invented paths each added
/// Prometheus series (~400 KB). Labels now come from fixed sets: one
/// `OTHER` method, one `unmatched` route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_paths_add_no_metric_series() {
    let t = TestRobot::start(Auth::Open).await;
    let metrics = || async {
        let (status, _, body) = t.raw("GET", "/metrics", &[], None).await;
        assert_eq!(status, 200);
        body.as_str().unwrap().to_owned()
    };
    // Every series the loop below may touch, once: the invented method on
    // a route and off any, an unmatched GET, and `/metrics` itself.
    for i in 0..3 {
        t.raw_exact(&format!("WARMUP{i}"), "/services", &[], None)
            .await;
        t.raw_exact(&format!("WARMUP{i}"), &format!("/warm/{i}"), &[], None)
            .await;
        t.raw_exact("GET", &format!("/warm/{i}"), &[], None).await;
        metrics().await;
    }
    let before = metrics().await;
    for i in 0..300 {
        t.raw_exact(&format!("INVENTED{i}"), "/services", &[], None)
            .await;
        t.raw_exact(&format!("INVENTED{i}"), &format!("/x/{i}"), &[], None)
            .await;
        t.raw_exact("GET", &format!("/made/up/{i}"), &[], None)
            .await;
    }
    let after = metrics().await;
    assert!(!after.contains("INVENTED") && !after.contains("/made/up"));
    assert!(after.contains("method=\"OTHER\""), "{after}");
    assert!(after.contains("route=\"unmatched\""), "{after}");
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(series(&before), series(&after), "new series appeared");
}

/// Anonymous `/metrics` named every private service (the `service` label of
/// the waiting tasks). No service name or guid appears in it now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_metrics_name_no_service() {
    let t = TestRobot::start(Auth::Jwt).await;
    let god = t.god();
    let svc = god
        .create_service(&node("payroll-db-private", false))
        .await
        .unwrap();
    let g = svc.service.guid;
    // Tasks waiting behind a running one, so the queue gauge has something.
    god.schedule(g, "slow", json!({"secs": 5})).await.unwrap();
    god.schedule(g, "echo", json!({})).await.unwrap();
    let done = god.schedule(g, "fail", json!({})).await;
    assert!(done.is_ok());
    let (status, _, body) = t.raw("GET", "/metrics", &[], None).await;
    assert_eq!(status, 200);
    let text = body.as_str().unwrap();
    assert!(text.contains("zrobot_tasks_waiting"), "{text}");
    assert!(!text.contains("payroll-db-private"), "{text}");
    assert!(!text.contains(&g.to_string()), "{text}");
    assert!(!text.contains(&g.simple().to_string()), "{text}");
}

/// A user JWT read, scheduled on, and deleted any service by name, private
/// and not its own. Now a service's endpoints need its secret (or an admin,
/// or god); a user JWT only creates services and gets their secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_jwt_alone_reaches_no_service() {
    let t = TestRobot::start(Auth::Jwt).await;
    let theirs = t
        .god()
        .create_service(&node("theirs", false))
        .await
        .unwrap();
    let user = vec![(USER_HEADER, format!("Bearer {}", user_jwt()))];
    let schedule = json!({"action_name": "echo", "args": {}}).to_string();
    for (method, path, body) in [
        ("GET", "/services/theirs".to_owned(), None),
        ("GET", "/services/theirs/actions".to_owned(), None),
        ("GET", "/services/theirs/logs".to_owned(), None),
        ("GET", "/services/theirs/task_list".to_owned(), None),
        (
            "POST",
            "/services/theirs/task_list".to_owned(),
            Some(schedule),
        ),
        ("DELETE", "/services/theirs".to_owned(), None),
        ("DELETE", format!("/services/{}", theirs.service.guid), None),
    ] {
        let (status, _, answer) = t
            .raw(method, &path, &user, body.map(String::into_bytes))
            .await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("secret"),
            "{answer}"
        );
    }
    assert!(t.robot.lookup("theirs").is_some(), "the user deleted it");
    // Its own service, through the secret it was handed.
    let mine = t
        .as_(Credentials::user(user_jwt()))
        .create_service(&node("mine", false))
        .await
        .unwrap();
    let (status, _, _) = t.raw("GET", "/services/mine", &user, None).await;
    assert_eq!(status, 403, "the JWT alone does not reach even its own");
    let with_secret = t.as_(Credentials::secrets([mine.secret.clone()]));
    with_secret.service(mine.service.guid).await.unwrap();
    with_secret.delete_service(mine.service.guid).await.unwrap();
    let listed: Vec<Value> =
        serde_json::from_value(t.raw("GET", "/services", &user, None).await.2).unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

/// A foreign page frames the dashboard (clickjacking) or gets a script
/// into it: every page and file says it may not be framed, runs only the
/// robot's own scripts and fetches only the robot, and is never sniffed as
/// another type. The pages hold no data: the same bytes to anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_cannot_be_framed_or_given_foreign_scripts() {
    let t = TestRobot::start(Auth::Jwt).await;
    let mut pages = Vec::new();
    for path in [
        "/",
        "/dashboard/app.js",
        "/dashboard/app.css",
        "/apidocs/",
        "/apidocs/init.js",
        "/apidocs/swagger-ui-bundle.js",
        "/apidocs/swagger-ui.css",
    ] {
        let (status, headers, body) = t.raw("GET", path, &[], None).await;
        assert_eq!(status, axum::http::StatusCode::OK, "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        for rule in [
            "default-src 'none'",
            "script-src 'self';",
            "connect-src 'self';",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        pages.push(body);
    }
    let god = [("ZrobotAdmin", format!("Bearer {GOD}"))];
    let (_, _, as_god) = t.raw("GET", "/", &god, None).await;
    assert_eq!(as_god, pages[0], "the page is the same for the god token");
    // `/apidocs` leads to the viewer's page.
    let (status, _, viewer) = t.raw("GET", "/apidocs", &[], None).await;
    assert_eq!((status, &viewer), (axum::http::StatusCode::OK, &pages[3]));
}
