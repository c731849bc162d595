//! Every endpoint against every credential level: allowed or denied, and
//! denied with the right status (401 without a usable credential, 403 with
//! one that does not grant enough).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use zrobot_client::{Credentials, ServiceCreate, ADMIN_HEADER, SECRET_HEADER, USER_HEADER};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cred {
    None,
    /// A JWT signed with another key.
    Wrong,
    User,
    Admin,
    /// The secret of the service the path names.
    OwnSecret,
    /// The secret of another service.
    OtherSecret,
    God,
}

const CREDS: [Cred; 7] = [
    Cred::None,
    Cred::Wrong,
    Cred::User,
    Cred::Admin,
    Cred::OwnSecret,
    Cred::OtherSecret,
    Cred::God,
];

/// The "who" column of the API's contract.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    /// Credentials are not even read.
    Anyone,
    /// Anyone, but what is listed depends on the credentials (so a bad
    /// token is refused).
    Listing,
    Admin,
    /// Admin or user.
    User,
    /// Admin or the secret of the service (a user JWT alone is not enough).
    Service,
    /// Anyone, on a public service (but a bad token is refused).
    Public,
}

/// An endpoint: method, path, body, who may call it, its statuses when allowed.
type Row = (&'static str, String, Option<String>, Who, &'static [u16]);

fn allowed(who: Who, cred: Cred) -> bool {
    match (who, cred) {
        (Who::Anyone, _) => true,
        (_, Cred::God) => true,
        (_, Cred::Wrong) => false,
        (Who::Listing | Who::Public, _) => true,
        (Who::Admin, c) => c == Cred::Admin,
        (Who::User, c) => matches!(c, Cred::Admin | Cred::User),
        (Who::Service, c) => matches!(c, Cred::Admin | Cred::OwnSecret),
    }
}

fn denial(cred: Cred) -> u16 {
    match cred {
        Cred::None | Cred::Wrong => 401,
        _ => 403,
    }
}

fn wrong_jwt() -> String {
    zrobot_testkit::jwt::sign(
        b"not the robot's key",
        json!(["user:memberof:admins"]),
        3600,
        "tester",
    )
}

fn headers(cred: Cred, own: &str, other: &str) -> Vec<(&'static str, String)> {
    match cred {
        Cred::None => vec![],
        Cred::Wrong => vec![(ADMIN_HEADER, format!("Bearer {}", wrong_jwt()))],
        Cred::User => vec![(USER_HEADER, format!("Bearer {}", user_jwt()))],
        Cred::Admin => vec![(ADMIN_HEADER, format!("Bearer {}", admin_jwt()))],
        Cred::OwnSecret => vec![(SECRET_HEADER, format!("Bearer {own}"))],
        Cred::OtherSecret => vec![(SECRET_HEADER, format!("Bearer {other}"))],
        Cred::God => vec![(ADMIN_HEADER, format!("Bearer {GOD}"))],
    }
}

fn node(name: &str, public: bool) -> ServiceCreate {
    ServiceCreate {
        template: "node".into(),
        name: name.into(),
        data: json!({"hostname": "h"}),
        public,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_against_every_credential() {
    let t = TestRobot::start(Auth::Jwt).await;
    let god = t.god();
    let own = god.create_service(&node("own", false)).await.unwrap();
    let other = god.create_service(&node("other", false)).await.unwrap();
    let g = own.service.guid;
    let task = god.schedule(g, "echo", json!({})).await.unwrap();
    god.wait_task(g, task.guid, Duration::from_secs(30))
        .await
        .unwrap();
    let tk = task.guid;
    let public = god.create_service(&node("public", true)).await.unwrap();
    let pg = public.service.guid;
    let ptask = god.schedule(pg, "echo", json!({})).await.unwrap();
    god.wait_task(pg, ptask.guid, Duration::from_secs(30))
        .await
        .unwrap();
    let ptk = ptask.guid;

    let webhook = json!({"kind": "eco", "url": "http://127.0.0.1:9/hook"}).to_string();
    let repo = json!({"url": "https://github.com/acme/more.git"}).to_string();
    let blueprint = json!({"content": {"services": []}}).to_string();
    let schedule = json!({"action_name": "echo", "args": {}}).to_string();

    let rows: Vec<Row> = vec![
        ("GET", "/robot/info".into(), None, Who::Anyone, &[200]),
        ("GET", "/robot/metrics".into(), None, Who::Anyone, &[200]),
        ("GET", "/metrics".into(), None, Who::Anyone, &[200]),
        ("GET", "/openapi.json".into(), None, Who::Anyone, &[200]),
        ("GET", "/robot/webhooks".into(), None, Who::Admin, &[200]),
        (
            "POST",
            "/robot/webhooks".into(),
            Some(webhook),
            Who::Admin,
            &[200, 201],
        ),
        (
            "DELETE",
            "/robot/webhooks/none".into(),
            None,
            Who::Admin,
            &[404],
        ),
        ("GET", "/templates".into(), None, Who::User, &[200]),
        (
            "POST",
            "/templates".into(),
            Some(repo.clone()),
            Who::Admin,
            &[400],
        ),
        ("PUT", "/templates".into(), Some(repo), Who::Admin, &[400]),
        (
            "POST",
            "/blueprints".into(),
            Some(blueprint),
            Who::User,
            &[400],
        ),
        ("GET", "/services".into(), None, Who::Listing, &[200]),
        (
            "POST",
            "/services".into(),
            Some(String::new()),
            Who::User,
            &[201],
        ),
        ("GET", format!("/services/{g}"), None, Who::Service, &[200]),
        (
            "GET",
            format!("/services/{g}/actions"),
            None,
            Who::Service,
            &[200],
        ),
        (
            "GET",
            format!("/services/{g}/logs"),
            None,
            Who::Service,
            &[200],
        ),
        (
            "GET",
            format!("/services/{g}/task_list"),
            None,
            Who::Service,
            &[200],
        ),
        (
            "GET",
            format!("/services/{g}/task_list?all=true"),
            None,
            Who::Service,
            &[200],
        ),
        (
            "POST",
            format!("/services/{g}/task_list"),
            Some(schedule),
            Who::Service,
            &[201],
        ),
        (
            "GET",
            format!("/services/{g}/task_list/{tk}"),
            None,
            Who::Service,
            &[200],
        ),
        (
            "GET",
            format!("/services/{g}/task_list/{tk}?wait=0.01"),
            None,
            Who::Service,
            &[200],
        ),
        (
            "DELETE",
            format!("/services/{g}/task_list/{tk}"),
            None,
            Who::Service,
            &[409],
        ),
        (
            "DELETE",
            "/services/{victim}".into(),
            None,
            Who::Service,
            &[204],
        ),
        // A public service: read and scheduled on by anyone; its log, its
        // cancellations and its deletion need its secret or an admin.
        ("GET", format!("/services/{pg}"), None, Who::Public, &[200]),
        (
            "GET",
            format!("/services/{pg}/actions"),
            None,
            Who::Public,
            &[200],
        ),
        (
            "GET",
            format!("/services/{pg}/task_list?all=true"),
            None,
            Who::Public,
            &[200],
        ),
        (
            "GET",
            format!("/services/{pg}/task_list/{ptk}"),
            None,
            Who::Public,
            &[200],
        ),
        (
            "POST",
            format!("/services/{pg}/task_list"),
            Some(json!({"action_name": "echo", "args": {}}).to_string()),
            Who::Public,
            &[201],
        ),
        (
            "GET",
            format!("/services/{pg}/logs"),
            None,
            Who::Service,
            &[200],
        ),
        (
            "DELETE",
            format!("/services/{pg}/task_list/{ptk}"),
            None,
            Who::Service,
            &[409],
        ),
        (
            "DELETE",
            "/services/{public-victim}".into(),
            None,
            Who::Service,
            &[204],
        ),
        // Clearing state changes the service: its secret or an admin, even
        // when it is public (nothing is set here, hence 404 once allowed).
        (
            "DELETE",
            format!("/services/{g}/state/network/tcp-22"),
            None,
            Who::Service,
            &[404],
        ),
        (
            "DELETE",
            format!("/services/{pg}/state/network"),
            None,
            Who::Service,
            &[404],
        ),
    ];

    let mut made = 0;
    let mut failures = Vec::new();
    for (method, path, body, who, ok) in &rows {
        for cred in CREDS {
            // Deletion consumes its service: each try gets a fresh one.
            let victim = if path.contains("{victim}") {
                Some(false)
            } else if path.contains("{public-victim}") {
                Some(true)
            } else {
                None
            };
            let (path, own_secret) = if let Some(public) = victim {
                made += 1;
                let victim = god
                    .create_service(&node(&format!("victim{made}"), public))
                    .await
                    .unwrap();
                (format!("/services/{}", victim.service.guid), victim.secret)
            } else if path.contains(&pg.to_string()) {
                (path.clone(), public.secret.clone())
            } else {
                (path.clone(), own.secret.clone())
            };
            let body = body.as_ref().map(|b| {
                if b.is_empty() {
                    made += 1;
                    json!({"template": "node", "name": format!("made{made}"), "data": {"hostname": "h"}})
                        .to_string()
                        .into_bytes()
                } else {
                    b.clone().into_bytes()
                }
            });
            let h = headers(cred, &own_secret, &other.secret);
            let (status, _, answer) = t.raw(method, &path, &h, body).await;
            let status = status.as_u16();
            let want_ok = allowed(*who, cred);
            let good = if want_ok {
                ok.contains(&status)
            } else {
                status == denial(cred)
                    && answer["code"] == status
                    && !answer["message"].as_str().unwrap_or("").is_empty()
            };
            if !good {
                failures.push(format!(
                    "{method} {path} as {cred:?}: got {status} {answer}, wanted {}",
                    if want_ok {
                        format!("one of {ok:?}")
                    } else {
                        format!("{}", denial(cred))
                    }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_and_data_depend_on_credentials() {
    let t = TestRobot::start(Auth::Jwt).await;
    let user = t.as_(Credentials::user(user_jwt()));
    let own = user.create_service(&node("own", false)).await.unwrap();
    let other = user.create_service(&node("other", false)).await.unwrap();
    user.create_service(&node("pub", true)).await.unwrap();
    assert!(own.service.data.is_none(), "no data without the god token");

    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for (cred, want) in [
        (Cred::None, vec!["pub"]),
        (Cred::User, vec!["pub"]),
        (Cred::OwnSecret, vec!["own", "pub"]),
        (Cred::OtherSecret, vec!["other", "pub"]),
        (Cred::Admin, vec!["other", "own", "pub"]),
        (Cred::God, vec!["other", "own", "pub"]),
    ] {
        let (status, _, body) = t
            .raw(
                "GET",
                "/services",
                &headers(cred, &own.secret, &other.secret),
                None,
            )
            .await;
        assert_eq!(status, 200, "{cred:?}");
        let with_data = body
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("data").is_some());
        let without_data = body
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("data").is_none());
        assert_eq!(names(body), want, "{cred:?}");
        assert!(
            if cred == Cred::God {
                with_data
            } else {
                without_data
            },
            "{cred:?}"
        );
    }

    // Several secrets in one header grant each service.
    let both = format!("Bearer {} {}", own.secret, other.secret);
    let (_, _, body) = t
        .raw("GET", "/services", &[(SECRET_HEADER, both)], None)
        .await;
    assert_eq!(names(body), ["other", "own", "pub"]);

    // God mode shows data; an admin does not see it.
    let g = own.service.guid;
    assert_eq!(
        t.god().service(g).await.unwrap().data,
        Some(json!({"hostname": "h", "port": 22}))
    );
    assert_eq!(t.admin().service(g).await.unwrap().data, None);
    let created = t.god().create_service(&node("godly", false)).await.unwrap();
    assert!(created.service.data.is_some());

    // Refusals say why.
    let expired = jwt(json!(["user:memberof:admins"]), -3600);
    let (status, _, body) = t
        .raw(
            "GET",
            "/templates",
            &[(ADMIN_HEADER, format!("Bearer {expired}"))],
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let (status, _, body) = t
        .raw(
            "GET",
            "/robot/webhooks",
            &[(USER_HEADER, format!("Bearer {}", user_jwt()))],
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        body["message"].as_str().unwrap().contains("admin"),
        "{body}"
    );
    let (status, _, body) = t
        .raw(
            "GET",
            "/robot/webhooks",
            &[(ADMIN_HEADER, format!("Bearer {}", user_jwt()))],
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("user:memberof:admins"),
        "{body}"
    );
    let (status, _, body) = t
        .raw(
            "GET",
            "/templates",
            &[(ADMIN_HEADER, "Token abc".into())],
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );

    // An unknown service looks the same as a forbidden one to a caller who
    // may not use services in general: names cannot be probed.
    let (status, _, _) = t
        .raw(
            "GET",
            "/services/no-such-service",
            &headers(Cred::OtherSecret, "", &other.secret),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = t
        .raw(
            "GET",
            "/services/no-such-service",
            &headers(Cred::User, "", ""),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = t
        .raw(
            "GET",
            "/services/no-such-service",
            &headers(Cred::Admin, "", ""),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_robot_allows_everything_but_data() {
    let t = TestRobot::start(Auth::Open).await;
    let created = t.client.create_service(&node("n", false)).await.unwrap();
    assert!(created.service.data.is_none());
    let g = created.service.guid;
    for (method, path) in [
        ("GET", "/robot/webhooks".to_owned()),
        ("GET", "/templates".to_owned()),
        ("GET", format!("/services/{g}")),
        ("GET", format!("/services/{g}/task_list")),
    ] {
        // Credentials an open robot cannot check are ignored, not refused.
        let (status, _, body) = t
            .raw(
                method,
                &path,
                &[(ADMIN_HEADER, format!("Bearer {}", wrong_jwt()))],
                None,
            )
            .await;
        assert_eq!(status, 200, "{method} {path}: {body}");
        assert!(body.get("data").is_none());
    }
    assert_eq!(
        t.client.services(&Default::default()).await.unwrap().len(),
        1
    );
    assert!(t.god().service(g).await.unwrap().data.is_some());
    assert!(t
        .as_(Credentials::secrets([GOD]))
        .service(g)
        .await
        .unwrap()
        .data
        .is_some());
    assert!(t
        .as_(Credentials::user(GOD))
        .service(g)
        .await
        .unwrap()
        .data
        .is_some());
}
