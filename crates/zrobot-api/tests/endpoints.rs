//! Every endpoint against a real robot: success and error codes, and the JSON
//! bodies field by field against 0-robot's names.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use uuid::Uuid;
use zrobot_client::{Credentials, ServiceCreate, ServiceFilter, TaskState, TemplateRepository};

const NODE_UID: &str = "github.com/acme/templates/node/1.2.0";

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort();
    k
}

fn node(name: &str) -> ServiceCreate {
    ServiceCreate {
        template: "node".into(),
        name: name.into(),
        data: json!({"hostname": "h1"}),
        public: false,
    }
}

async fn error_of(r: Result<impl std::fmt::Debug, zrobot_client::ClientError>) -> (u16, String) {
    let e = r.expect_err("the request fails");
    (
        e.status().expect("the robot answered"),
        e.message().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_info_and_host_metrics() {
    let t = TestRobot::start(Auth::Open).await;
    let (status, _, body) = t.raw("GET", "/robot/info", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"repositories": {"config": {"url": ""}, "data": {"url": ""}}, "storage_healthy": true})
    );
    let info = t.client.robot_info().await.unwrap();
    assert!(info.storage_healthy);

    t.god().create_service(&node("n1")).await.unwrap();
    let (status, _, body) = t.raw("GET", "/robot/metrics", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&body), ["cpu", "memory", "nr_services"]);
    assert_eq!(
        keys(&body["cpu"]),
        ["idle", "iowait", "irq", "nice", "softirq", "system", "user"]
    );
    assert_eq!(
        keys(&body["memory"]),
        [
            "active",
            "cached",
            "free",
            "swap_free",
            "swap_total",
            "total"
        ]
    );
    assert_eq!(body["nr_services"], 1);
    let m = t.client.robot_metrics().await.unwrap();
    if std::path::Path::new("/proc/meminfo").exists() {
        assert!(m.memory.total > 0 && m.memory.free <= m.memory.total);
        let sum = m.cpu.user
            + m.cpu.nice
            + m.cpu.system
            + m.cpu.idle
            + m.cpu.iowait
            + m.cpu.irq
            + m.cpu.softirq;
        assert!(sum <= 100.5, "cpu shares add up to {sum}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_and_blueprints() {
    let t = TestRobot::start(Auth::Open).await;
    let (status, _, body) = t.raw("GET", "/templates", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!([{"uid": NODE_UID, "host": "github.com", "account": "acme", "repository": "templates", "name": "node", "version": "1.2.0"}])
    );
    let repo = TemplateRepository {
        url: "https://github.com/acme/more.git".into(),
        branch: Some("main".into()),
    };
    // This robot was started without template repositories from git.
    let (code, message) = error_of(t.client.add_template_repo(&repo).await).await;
    assert_eq!(code, 400);
    assert!(
        message.contains("does not manage template repositories"),
        "{message}"
    );
    let (code, _) = error_of(t.client.checkout_template_repo(&repo).await).await;
    assert_eq!(code, 400);
    // The error body is {code, message}.
    let (status, _, body) = t
        .raw(
            "POST",
            "/templates",
            &[],
            Some(br#"{"url": "https://x/y.git"}"#.to_vec()),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(keys(&body), ["code", "message"]);
    assert_eq!(body["code"], 400);

    // A blueprint creates services (with their secrets) and schedules tasks.
    let result = t
        .client
        .execute_blueprint(json!({
            "services": [{"node__bp1": {"hostname": "h1"}}],
            "actions": [{"service": "bp1", "actions": ["nothing"]}]
        }))
        .await
        .unwrap();
    assert_eq!(result.services.len(), 1);
    assert_eq!(result.services[0].service.name, "bp1");
    assert!(result.services[0].secret.len() >= 32);
    assert_eq!(result.tasks.len(), 1);
    assert_eq!(result.tasks[0].action_name, "nothing");
    assert_eq!(result.tasks[0].service_name, "bp1");
    let (status, _, body) = t
        .raw(
            "POST",
            "/blueprints",
            &[],
            Some(br#"{"content": {"services": [{"node__bp2": {"hostname": "h"}}], "actions": [{"service": "bp2", "actions": ["nosuch"]}]}}"#.to_vec()),
        )
        .await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("actions[0]: service `bp2`"),
        "{message}"
    );
    // Nothing of the failed blueprint remains.
    let (status, _, _) = t.raw("GET", "/services/bp2", &[], None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_and_delete_services() {
    let t = TestRobot::start(Auth::Open).await;
    let body =
        json!({"template": "node", "name": "node1", "data": {"hostname": "h1"}, "public": true});
    let (status, headers, created) = t
        .raw(
            "POST",
            "/services",
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        keys(&created),
        ["guid", "name", "public", "secret", "state", "template", "version"],
        "no data without the god token"
    );
    let guid = created["guid"].as_str().unwrap().to_owned();
    Uuid::parse_str(&guid).unwrap();
    assert_eq!(headers["location"], format!("/services/{guid}").as_str());
    assert_eq!(created["name"], "node1");
    assert_eq!(created["template"], NODE_UID);
    assert_eq!(created["version"], "1.2.0");
    assert_eq!(created["public"], true);
    assert_eq!(created["state"], json!([]));
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_hexdigit()),
        "{secret}"
    );
    // Only a hash is kept.
    let svc = t.robot.lookup("node1").unwrap();
    assert!(!svc.secret_hashes().iter().any(|h| h == secret));
    assert_eq!(svc.secret_hashes().len(), 1);

    // Errors: unknown template, invalid data, taken name, bad name, bad JSON.
    let (code, message) = error_of(
        t.client
            .create_service(&ServiceCreate {
                template: "nope".into(),
                ..node("x")
            })
            .await,
    )
    .await;
    assert_eq!(code, 400);
    assert!(message.contains("nope"), "{message}");
    let (code, message) = error_of(
        t.client
            .create_service(&ServiceCreate {
                data: json!({"port": 1}),
                ..node("x")
            })
            .await,
    )
    .await;
    assert_eq!(code, 400);
    assert!(message.contains("hostname"), "{message}");
    let (code, message) = error_of(
        t.client
            .create_service(&ServiceCreate {
                data: json!({"hostname": "h", "port": "x"}),
                ..node("x")
            })
            .await,
    )
    .await;
    assert_eq!(code, 400);
    assert!(message.contains("port"), "{message}");
    let (code, message) = error_of(t.client.create_service(&node("node1")).await).await;
    assert_eq!(code, 409);
    assert!(message.contains("node1"), "{message}");
    let (code, _) = error_of(t.client.create_service(&node("bad name!")).await).await;
    assert_eq!(code, 400);
    let (status, _, body) = t
        .raw("POST", "/services", &[], Some(b"{\"template\": ".to_vec()))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("invalid JSON"),
        "{body}"
    );
    let (status, _, body) = t
        .raw("POST", "/services", &[], Some(br#"{"name": "x"}"#.to_vec()))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("template"),
        "{body}"
    );
    // No name (0-robot allowed it): the robot makes one up.
    for body in [
        json!({"template": "node", "data": {"hostname": "h"}}),
        json!({"template": "node", "name": null, "data": {"hostname": "h"}}),
    ] {
        let (status, _, made) = t
            .raw(
                "POST",
                "/services",
                &[],
                Some(body.to_string().into_bytes()),
            )
            .await;
        assert_eq!(status, 201, "{made}");
        let name = made["name"].as_str().unwrap();
        Uuid::parse_str(name).unwrap();
        let guid = Uuid::parse_str(made["guid"].as_str().unwrap()).unwrap();
        t.client.delete_service(guid).await.unwrap();
    }
    let (status, _, body) = t
        .raw(
            "POST",
            "/services",
            &[],
            Some(br#"{"template": "node", "name": "x", "colour": 1}"#.to_vec()),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );

    // Get: by guid, by name; data only for god.
    let guid = Uuid::parse_str(&guid).unwrap();
    let s = t.client.service(guid).await.unwrap();
    assert_eq!(s.name, "node1");
    assert!(s.data.is_none());
    let (status, _, body) = t.raw("GET", "/services/node1", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(
        keys(&body),
        ["guid", "name", "public", "state", "template", "version"]
    );
    let s = t.god().service(guid).await.unwrap();
    assert_eq!(s.data, Some(json!({"hostname": "h1", "port": 22})));
    let (code, message) = error_of(t.client.service(Uuid::new_v4()).await).await;
    assert_eq!(code, 404);
    assert!(message.contains("no service"), "{message}");

    // State rows.
    let task = t.client.schedule(guid, "mark", Value::Null).await.unwrap();
    t.client
        .wait_task(guid, task.guid, Duration::from_secs(30))
        .await
        .unwrap();
    let (_, _, body) = t.raw("GET", &format!("/services/{guid}"), &[], None).await;
    assert_eq!(
        body["state"],
        json!([{"category": "network", "tag": "tcp-22", "state": "ok"}])
    );

    // List with filters.
    t.client.create_service(&node("node2")).await.unwrap();
    let all = t.client.services(&ServiceFilter::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["node1", "node2"]
    );
    let by_name = ServiceFilter {
        name: Some("node2".into()),
        ..Default::default()
    };
    assert_eq!(t.client.services(&by_name).await.unwrap().len(), 1);
    for (key, value, found) in [
        ("template_uid", NODE_UID, 2),
        ("template_uid", "node/1.2.0", 2),
        ("template_name", "node", 2),
        ("template_name", "vm", 0),
        ("template_host", "github.com", 2),
        ("template_account", "acme", 2),
        ("template_repo", "templates", 2),
        ("template_version", "1.2.0", 2),
        ("template_version", "1.2.1", 0),
    ] {
        let (status, _, body) = t
            .raw("GET", &format!("/services?{key}={value}"), &[], None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(body.as_array().unwrap().len(), found, "{key}={value}");
    }
    let (status, _, body) = t.raw("GET", "/services?colour=red", &[], None).await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );

    // Delete.
    t.client.delete_service(guid).await.unwrap();
    assert_eq!(error_of(t.client.service(guid).await).await.0, 404);
    assert_eq!(error_of(t.client.delete_service(guid).await).await.0, 404);
    assert!(t.robot.lookup("node1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_and_logs() {
    let t = TestRobot::start(Auth::Open).await;
    let s = t.client.create_service(&node("n")).await.unwrap();
    let guid = s.service.guid;
    let (status, _, body) = t
        .raw("GET", &format!("/services/{guid}/actions"), &[], None)
        .await;
    assert_eq!(status, 200);
    let actions = body.as_array().unwrap();
    let names: Vec<&str> = actions
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["create_vm", "echo", "fail", "mark", "nothing", "slow"]
    );
    for a in actions {
        assert_eq!(keys(a), ["arguments", "arguments_schema", "name"]);
    }
    // 0-robot's `string[]`: the names, the required ones first; the schema
    // beside them.
    assert_eq!(actions[0]["arguments"], json!(["name", "memory"]));
    assert_eq!(actions[0]["arguments_schema"]["required"], json!(["name"]));
    assert_eq!(actions[1]["arguments"], json!([]));
    assert_eq!(actions[1]["arguments_schema"], Value::Null);
    assert_eq!(
        error_of(t.client.actions(Uuid::new_v4()).await).await.0,
        404
    );

    let task = t.client.schedule(guid, "mark", json!({})).await.unwrap();
    t.client
        .wait_done(guid, task.guid, Duration::from_secs(30))
        .await
        .unwrap();
    let (status, _, body) = t
        .raw("GET", &format!("/services/{guid}/logs"), &[], None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(keys(&body), ["logs"]);
    let logs = body["logs"].as_str().unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines[0].contains(" INFO created from template"), "{logs}");
    // A line an action wrote names its task: `[action <start of guid>]`.
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" INFO [mark ") && l.ends_with("] marked")),
        "{logs}"
    );
    // Each line starts with an ISO 8601 time.
    assert!(
        lines
            .iter()
            .all(|l| l.as_bytes()[4] == b'-' && l.contains('T') && l.contains("Z ")),
        "{logs}"
    );
    assert_eq!(error_of(t.client.logs(Uuid::new_v4()).await).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_schedule_get_and_results() {
    let t = TestRobot::start(Auth::Open).await;
    let guid = t
        .client
        .create_service(&node("n"))
        .await
        .unwrap()
        .service
        .guid;

    let (status, headers, task) = t
        .raw(
            "POST",
            &format!("/services/{guid}/task_list"),
            &[],
            Some(
                json!({"action_name": "echo", "args": {"ip": "10.0.0.1"}})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    // `duration`, `result` and `eco` come once there is something to say.
    assert_eq!(
        keys(&task),
        [
            "action_name",
            "args",
            "attempt",
            "created",
            "guid",
            "service_guid",
            "service_name",
            "state",
            "template_name",
            "template_uid"
        ]
    );
    let task_guid = task["guid"].as_str().unwrap();
    assert_eq!(
        headers["location"],
        format!("/services/{guid}/task_list/{task_guid}").as_str()
    );
    assert_eq!(task["service_guid"], guid.to_string());
    assert_eq!(task["service_name"], "n");
    assert_eq!(task["template_name"], "node");
    assert_eq!(task["template_uid"], NODE_UID);
    assert_eq!(task["action_name"], "echo");
    assert_eq!(task["args"], json!({"ip": "10.0.0.1"}));
    assert!(task["created"].is_i64());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((task["created"].as_i64().unwrap() - now).abs() < 60);

    // Long poll until done: the result is a JSON *string*.
    let (status, _, done) = t
        .raw(
            "GET",
            &format!("/services/{guid}/task_list/{task_guid}?wait=30"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(done["state"], "ok");
    assert_eq!(
        done["result"],
        Value::String(r#"{"ip":"10.0.0.1"}"#.to_owned())
    );
    assert!(done["duration"].as_f64().unwrap() >= 0.0);
    assert_eq!(done["eco"], Value::Null);
    assert_eq!(done["attempt"], 1);

    // Args schema defaults apply; an action returning nothing has a null result.
    let vm = t
        .client
        .schedule(guid, "create_vm", json!({"name": "vm1"}))
        .await
        .unwrap();
    assert_eq!(vm.args, json!({"name": "vm1", "memory": 1024}));
    let vm = t
        .client
        .wait_task(guid, vm.guid, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        vm.result_value(),
        Some(json!({"ip": "10.0.0.1", "memory": 1024}))
    );
    let nothing = t
        .client
        .schedule(guid, "nothing", Value::Null)
        .await
        .unwrap();
    let nothing = t
        .client
        .wait_task(guid, nothing.guid, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(nothing.state, TaskState::Ok);
    assert_eq!(nothing.result, None);

    // A failing task has an eco with 0-robot's names.
    let fail = t.client.schedule(guid, "fail", json!({})).await.unwrap();
    let (_, _, failed) = t
        .raw(
            "GET",
            &format!("/services/{guid}/task_list/{}?wait=30", fail.guid),
            &[],
            None,
        )
        .await;
    assert_eq!(failed["state"], "error");
    assert_eq!(failed["result"], Value::Null);
    let eco = &failed["eco"];
    assert_eq!(
        keys(eco),
        [
            "cat",
            "count",
            "message",
            "message_pub",
            "time_first",
            "time_last",
            "trace"
        ]
    );
    assert_eq!(eco["count"], 1);
    assert!(
        eco["message"].as_str().unwrap().contains("boom on purpose"),
        "{eco}"
    );
    assert!(
        eco["message_pub"]
            .as_str()
            .unwrap()
            .contains("boom on purpose"),
        "{eco}"
    );
    assert!(!eco["cat"].as_str().unwrap().is_empty());
    assert!(eco["time_first"].is_i64() && eco["time_last"].is_i64());

    // Errors: unknown action, bad args, unknown service, unknown task.
    let (code, message) = error_of(t.client.schedule(guid, "dance", json!({})).await).await;
    assert_eq!(code, 400);
    assert!(
        message.contains("dance") && message.contains("echo"),
        "{message}"
    );
    let (code, message) = error_of(
        t.client
            .schedule(guid, "create_vm", json!({"memory": 1}))
            .await,
    )
    .await;
    assert_eq!(code, 400);
    assert!(message.contains("name"), "{message}");
    assert_eq!(
        error_of(t.client.schedule(Uuid::new_v4(), "echo", json!({})).await)
            .await
            .0,
        404
    );
    assert_eq!(
        error_of(t.client.task(guid, Uuid::new_v4()).await).await.0,
        404
    );
    let (status, _, _) = t
        .raw(
            "GET",
            &format!("/services/{guid}/task_list/not-a-guid"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _, body) = t
        .raw(
            "GET",
            &format!("/services/{guid}/task_list/{task_guid}?wait=-1"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("wait"), "{body}");
    let (status, _, _) = t
        .raw(
            "POST",
            &format!("/services/{guid}/task_list"),
            &[],
            Some(b"[1,".to_vec()),
        )
        .await;
    assert_eq!(status, 400);

    // The list: finished tasks only with `all`.
    let waiting = t.client.tasks(guid, false).await.unwrap();
    assert!(waiting.is_empty(), "{waiting:?}");
    let all = t.client.tasks(guid, true).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|t| t.action_name.as_str())
            .collect::<Vec<_>>(),
        ["echo", "create_vm", "nothing", "fail"]
    );
    let (status, _, body) = t
        .raw(
            "GET",
            &format!("/services/{guid}/task_list?all=True"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 4);
    let (status, _, _) = t
        .raw(
            "GET",
            &format!("/services/{guid}/task_list?all=maybe"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_of(t.client.tasks(Uuid::new_v4(), false).await)
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_when_the_task_ends_and_cancel_rules() {
    let t = TestRobot::start(Auth::Open).await;
    let guid = t
        .client
        .create_service(&node("n"))
        .await
        .unwrap()
        .service
        .guid;
    let slow = t
        .client
        .schedule(guid, "slow", json!({"secs": 3}))
        .await
        .unwrap();
    let queued = t
        .client
        .schedule(guid, "echo", json!({"x": 1}))
        .await
        .unwrap();

    // A short wait ends before the task: it is answered not done.
    let early = t
        .client
        .wait_task(guid, queued.guid, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(!early.state.is_done(), "{early:?}");

    // The running task cannot be cancelled; the queued one can, once.
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            t.client.task(guid, slow.guid).await.unwrap().state == TaskState::Running
        })
        .await
    );
    let listed = t.client.tasks(guid, false).await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.guid).collect::<Vec<_>>(),
        [slow.guid, queued.guid]
    );
    let (code, message) = error_of(t.client.cancel_task(guid, slow.guid).await).await;
    assert_eq!(code, 409);
    assert!(message.contains("running"), "{message}");
    let (status, _, body) = t
        .raw(
            "DELETE",
            &format!("/services/{guid}/task_list/{}", queued.guid),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let cancelled = t.client.task(guid, queued.guid).await.unwrap();
    assert_eq!(cancelled.state, TaskState::Error);
    assert_eq!(cancelled.eco.unwrap().cat, "task.cancelled");
    assert_eq!(
        error_of(t.client.cancel_task(guid, queued.guid).await)
            .await
            .0,
        409
    );
    assert_eq!(
        error_of(t.client.cancel_task(guid, Uuid::new_v4()).await)
            .await
            .0,
        404
    );

    // The long poll answers as soon as the task ends, long before its wait.
    let started = Instant::now();
    let done = t
        .client
        .wait_task(guid, slow.guid, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::Ok);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        error_of(t.client.cancel_task(guid, slow.guid).await)
            .await
            .0,
        409
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_long_polls() {
    let mut t = TestRobot::start(Auth::Open).await;
    let guid = t
        .client
        .create_service(&node("n"))
        .await
        .unwrap()
        .service
        .guid;
    let slow = t
        .client
        .schedule(guid, "slow", json!({"secs": 600}))
        .await
        .unwrap();
    let client = t.client.clone();
    let poll = tokio::spawn(async move {
        client
            .wait_task(guid, slow.guid, Duration::from_secs(500))
            .await
    });
    // The poll is in flight once two requests are: it and the metrics request.
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            t.client
                .prometheus_metrics()
                .await
                .unwrap()
                .contains("zrobot_http_requests_in_flight 2")
        })
        .await
    );
    t.stop_within(Duration::from_secs(20)).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .unwrap()
        .unwrap();
    let task = answered.expect("the long poll is answered, not cut");
    assert!(!task.state.is_done());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limits_and_unknown_routes() {
    let t = TestRobot::start_with(Auth::Open, |c| c.body_limit = 4096).await;
    let big = json!({"template": "node", "name": "n", "data": {"hostname": "x".repeat(10_000)}});
    let (status, _, body) = t
        .raw("POST", "/services", &[], Some(big.to_string().into_bytes()))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], 413);
    let (status, _, _) = t.raw("POST", "/services", &[], Some(b"".to_vec())).await;
    assert_eq!(status, 400);
    let (status, _, body) = t.raw("GET", "/nowhere", &[], None).await;
    assert_eq!(status, 404);
    assert_eq!(keys(&body), ["code", "message"]);
    let (status, _, body) = t.raw("PATCH", "/services", &[], None).await;
    assert_eq!(status, 405);
    assert_eq!(body["code"], 405);
}

/// The value of the series `series` (name and labels, as printed).
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The host as 0-robot's `/metrics` gave it, and its `name[]` filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_tell_the_host_and_filter_by_name() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let t = TestRobot::start_with(Auth::Open, |c| c.data_dir = Some(dir)).await;
    let (status, _, body) = t.raw("GET", "/metrics", &[], None).await;
    assert_eq!(status, 200);
    let text = body.as_str().unwrap().to_owned();
    let cpu: f64 = ["user", "nice", "system", "idle", "iowait", "irq", "softirq"]
        .iter()
        .map(|m| {
            series(&text, &format!("zrobot_host_cpu_percent{{mode=\"{m}\"}}"))
                .unwrap_or_else(|| panic!("no cpu mode {m} in:\n{text}"))
        })
        .sum();
    assert!(cpu > 90.0 && cpu < 110.0, "{cpu}\n{text}");
    let total = series(&text, "zrobot_host_memory_bytes{kind=\"total\"}").unwrap();
    let free = series(&text, "zrobot_host_memory_bytes{kind=\"free\"}").unwrap();
    assert!(total > 1e8 && free <= total, "{text}");
    let size = series(&text, "zrobot_data_dir_filesystem_bytes{kind=\"size\"}").unwrap();
    let available = series(
        &text,
        "zrobot_data_dir_filesystem_bytes{kind=\"available\"}",
    )
    .unwrap();
    assert!(size > 0.0 && available <= size, "{text}");
    // Loopback carried this very scrape's request, before it was answered.
    let lo = series(
        &text,
        "zrobot_host_network_bytes{direction=\"received\",interface=\"lo\"}",
    )
    .unwrap();
    assert!(lo > 0.0, "{text}");

    // `name[]`, repeated, as 0-robot's clients send it (encoded or not).
    for query in [
        "name[]=zrobot_services&name[]=zrobot_host_memory_bytes",
        "name%5B%5D=zrobot_services&name%5B%5D=zrobot_host_memory_bytes",
    ] {
        let (status, _, body) = t.raw("GET", &format!("/metrics?{query}"), &[], None).await;
        assert_eq!(status, 200);
        let text = body.as_str().unwrap();
        let names: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(['{', ' ']).next().unwrap())
            .collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["zrobot_host_memory_bytes", "zrobot_services"],
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_and_openapi() {
    let t = TestRobot::start(Auth::Open).await;
    let guid = t
        .client
        .create_service(&node("n"))
        .await
        .unwrap()
        .service
        .guid;
    let ok = t.client.schedule(guid, "echo", json!({})).await.unwrap();
    let bad = t.client.schedule(guid, "fail", json!({})).await.unwrap();
    t.client
        .wait_task(guid, ok.guid, Duration::from_secs(30))
        .await
        .unwrap();
    t.client
        .wait_task(guid, bad.guid, Duration::from_secs(30))
        .await
        .unwrap();
    let text = t.client.prometheus_metrics().await.unwrap();
    for needle in [
        "zrobot_services 1",
        &format!("zrobot_tasks_waiting{{template=\"{NODE_UID}\"}} 0"),
        &format!("zrobot_task_duration_seconds_count{{action=\"echo\",template=\"{NODE_UID}\"}} 1"),
        &format!("zrobot_tasks_failed_total{{action=\"fail\",template=\"{NODE_UID}\"}} 1"),
        "zrobot_http_requests_total{method=\"POST\",route=\"/services/{guid}/task_list\",status=\"201\"} 2",
        "zrobot_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let (status, headers, _) = t.raw("GET", "/metrics", &[], None).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    let (status, _, doc) = t.raw("GET", "/openapi.json", &[], None).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/robot/info",
        "/robot/metrics",
        "/robot/webhooks",
        "/robot/webhooks/{id}",
        "/templates",
        "/blueprints",
        "/services",
        "/services/{guid}",
        "/services/{guid}/actions",
        "/services/{guid}/logs",
        "/services/{guid}/task_list",
        "/services/{guid}/task_list/{task_guid}",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["Task"]["properties"]["message_pub"].is_null());
    assert!(doc["components"]["schemas"]["Eco"]["properties"]["message_pub"].is_object());
    assert_eq!(zrobot_api::openapi().paths.paths.len(), paths.len());
}

/// Chat formats: Slack's `{text}`, Telegram's `{chat_id, text}` (the chat
/// from the URL), naming the service and the error, never the arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_in_chat_formats_carry_a_message() {
    let t = TestRobot::start(Auth::Open).await;
    let mut slack = WebhookReceiver::start(0).await;
    let mut telegram = WebhookReceiver::start(0).await;
    let god = t.god();
    let hook = god.add_webhook_as(&slack.url, Some("slack")).await.unwrap();
    assert_eq!(hook.format.as_deref(), Some("slack"));
    god.add_webhook_as(&format!("{}?chat_id=-1001", telegram.url), Some("telegram"))
        .await
        .unwrap();
    for (url, format, why) in [
        (slack.url.clone(), "sms", "format"),
        (telegram.url.clone(), "telegram", "chat_id"),
    ] {
        let err = god
            .add_webhook_as(&format!("{url}/x"), Some(format))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400), "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
    let listed = god.webhooks().await.unwrap();
    assert_eq!(listed.len(), 2);
    let guid = t
        .client
        .create_service(&node("n"))
        .await
        .unwrap()
        .service
        .guid;
    t.client
        .schedule(guid, "fail", json!({"password": "hunter2"}))
        .await
        .unwrap();
    let said = slack.next(Duration::from_secs(30)).await;
    let text = said["text"].as_str().unwrap();
    assert!(
        text.contains("task `fail` of service `n`") && text.contains("boom on purpose"),
        "{said}"
    );
    assert!(!text.contains("hunter2"), "{said}");
    assert_eq!(said.as_object().unwrap().len(), 1, "{said}");
    let sent = telegram.next(Duration::from_secs(30)).await;
    assert_eq!(sent["chat_id"], "-1001");
    assert_eq!(sent["text"], said["text"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_kept_and_told_about_failed_tasks() {
    let t = TestRobot::start(Auth::Open).await;
    let mut receiver = WebhookReceiver::start(1).await;

    let (status, _, hook) = t
        .raw(
            "POST",
            "/robot/webhooks",
            &[],
            Some(
                json!({"kind": "eco", "url": receiver.url})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!(keys(&hook), ["id", "kind", "url"]);
    assert_eq!(hook["kind"], "eco");
    assert_eq!(hook["url"], receiver.url.as_str());
    let again = t.client.add_webhook(&receiver.url).await.unwrap();
    assert_eq!(again.id, hook["id"].as_str().unwrap());
    assert_eq!(
        t.client.webhooks().await.unwrap(),
        std::slice::from_ref(&again)
    );
    let stored = t
        .robot
        .setting("webhooks")
        .expect("the list is a robot setting");
    assert_eq!(stored[0]["url"], receiver.url.as_str());

    for (body, field) in [
        (json!({"kind": "eco", "url": "ftp://x/y"}), "url"),
        (json!({"kind": "eco", "url": "not a url"}), "url"),
        (json!({"kind": "sms", "url": "http://x/y"}), "kind"),
    ] {
        let (status, _, err) = t
            .raw(
                "POST",
                "/robot/webhooks",
                &[],
                Some(body.to_string().into_bytes()),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(err["message"].as_str().unwrap().contains(field), "{err}");
    }

    // A failed task is POSTed; the first try gets a 500 and is retried.
    let guid = t
        .client
        .create_service(&node("n"))
        .await
        .unwrap()
        .service
        .guid;
    let ok = t.client.schedule(guid, "echo", json!({})).await.unwrap();
    t.client
        .wait_task(guid, ok.guid, Duration::from_secs(30))
        .await
        .unwrap();
    let task = t
        .client
        .schedule(guid, "fail", json!({"why": "test"}))
        .await
        .unwrap();
    let first = receiver.next(Duration::from_secs(30)).await;
    let second = receiver.next(Duration::from_secs(30)).await;
    assert_eq!(first, second, "the retry sends the same body");
    assert_eq!(first["service"], guid.to_string());
    assert_eq!(first["service_name"], "n");
    assert_eq!(first["task_guid"], task.guid.to_string());
    assert_eq!(first["action_name"], "fail");
    assert_eq!(first["args"], json!({"why": "test"}));
    assert!(first["eco"]["message"]
        .as_str()
        .unwrap()
        .contains("boom on purpose"));
    assert_eq!(first["eco"]["count"], 1);

    t.client.delete_webhook(&again.id).await.unwrap();
    assert!(t.client.webhooks().await.unwrap().is_empty());
    assert_eq!(
        error_of(t.client.delete_webhook(&again.id).await).await.0,
        404
    );
    assert_eq!(t.robot.setting("webhooks"), Some(json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_robot_refuses_to_listen_beyond_loopback() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let robot = zrobot_core::Robot::new(
        Default::default(),
        std::sync::Arc::new(zrobot_lua::LuaEngine::new(Default::default())),
        std::sync::Arc::new(zrobot_core::store::MemoryStore::new()),
    );
    let err = zrobot_api::serve(
        listener,
        robot.clone(),
        zrobot_api::ApiConfig::default(),
        async {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("--insecure"), "{err}");

    let bad = zrobot_api::ApiConfig {
        auth: zrobot_api::AuthConfig {
            admin_organization: Some("a".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = zrobot_api::serve(listener, robot, bad, async {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--jwt-key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_the_client_grant_their_service() {
    let t = TestRobot::start(Auth::Jwt).await;
    let created = t
        .as_(Credentials::user(user_jwt()))
        .create_service(&node("mine"))
        .await
        .unwrap();
    let mut owner = t.client.clone();
    owner.add_secret(created.secret.clone());
    let guid = created.service.guid;
    assert_eq!(owner.service(guid).await.unwrap().name, "mine");
    let listed = owner.services(&ServiceFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    let task = owner.schedule(guid, "echo", json!({"a": 1})).await.unwrap();
    assert_eq!(
        owner
            .wait_task(guid, task.guid, Duration::from_secs(30))
            .await
            .unwrap()
            .state,
        TaskState::Ok
    );
    assert!(t
        .client
        .services(&ServiceFilter::default())
        .await
        .unwrap()
        .is_empty());
    let (code, message) = error_of(t.client.service(guid).await).await;
    assert_eq!(code, 401);
    assert!(message.contains("ZrobotSecret"), "{message}");
    owner.delete_service(guid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_natively() {
    let t = TestRobot::start_with(Auth::Jwt, |c| {
        c.tls = Some(zrobot_api::TlsConfig {
            cert_file: fixture_path("tls-cert.pem"),
            key_file: fixture_path("tls-key.pem"),
        })
    })
    .await;
    assert!(t.url.starts_with("https://"));
    assert!(t.client.robot_info().await.unwrap().storage_healthy);
    let created = t.admin().create_service(&node("n")).await.unwrap();
    assert_eq!(
        t.god().service(created.service.guid).await.unwrap().name,
        "n"
    );
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/robot/info", t.addr))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that does not trust the certificate refuses the robot.
    let untrusting = zrobot_client::Client::new(&t.url, Credentials::default()).unwrap();
    assert!(untrusting
        .robot_info()
        .await
        .unwrap_err()
        .status()
        .is_none());

    // Unusable TLS files stop the robot before it serves, naming the file.
    let robot = t.robot.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = zrobot_api::ApiConfig {
        tls: Some(zrobot_api::TlsConfig {
            cert_file: fixture_path("missing-cert.pem"),
            key_file: fixture_path("tls-key.pem"),
        }),
        ..Default::default()
    };
    let err = zrobot_api::serve(listener, robot, config, async {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("missing-cert.pem") && err.to_string().contains("--tls-cert"),
        "{err}"
    );
}
