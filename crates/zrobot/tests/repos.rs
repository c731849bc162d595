//! Template repositories from git and the data repository, through a real
//! robot process: at start, at run time, upgrades, restarts, failures.

mod util;

use std::time::Duration;

use serde_json::json;
use util::*;
use zrobot_client::wire::{ServiceCreate, TaskState, TemplateRepository};

const THING_V1: &str =
    "version: 1.0.0\ndata: {type: object, properties: {notes: {type: array, default: []}}}\n";
const THING_V2: &str = "version: 1.1.0\ndata: {type: object, properties: {notes: {type: array, default: []}, from: {type: string}}}\n";
const THING_LUA_V1: &str = r#"
local t = {}
function t.slow(self) robot.sleep(1) end
function t.note(self, args) table.insert(self.data.notes, "v1:" .. args.what) end
return t
"#;
const THING_LUA_V2: &str = r#"
local t = {}
function t.migrate(self, from) self.data.from = from end
function t.slow(self) robot.sleep(1) end
function t.note(self, args) table.insert(self.data.notes, "v2:" .. args.what) end
return t
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_moves_services_with_their_waiting_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("things"),
        &[
            ("templates/thing/template.yaml", THING_V1),
            ("templates/thing/thing.lua", THING_LUA_V1),
        ],
    );
    tag_head(&repo, "v1");
    let url = format!("file://{}", repo.display());
    let mut robot = RobotProcess::start(
        &tmp.path().join("data"),
        &["--god", "-T", &format!("{url}#v1")],
    );
    let client = robot.god_client();
    let templates = client.templates().await.unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].version, "1.0.0");
    let svc = new_service(&client, "thing", "a").await;
    let slow = client.schedule(svc, "slow", json!({})).await.unwrap();
    let queued = client
        .schedule(svc, "note", json!({"what": "queued"}))
        .await
        .unwrap();

    commit_files(
        &repo,
        &[
            ("templates/thing/template.yaml", THING_V2),
            ("templates/thing/thing.lua", THING_LUA_V2),
        ],
        Some("v2"),
    );
    client
        .checkout_template_repo(&TemplateRepository {
            url: url.clone(),
            branch: Some("v2".into()),
        })
        .await
        .unwrap();
    let s = client.service(svc).await.unwrap();
    assert_eq!(s.version, "1.1.0");
    assert_eq!(s.data.as_ref().unwrap()["from"], json!("1.0.0"));
    let slow = client
        .wait_done(svc, slow.guid, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(slow.state, TaskState::Ok);
    let queued = client
        .wait_done(svc, queued.guid, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(queued.state, TaskState::Ok, "{queued:?}");
    let s = client.service(svc).await.unwrap();
    assert_eq!(s.data.unwrap()["notes"], json!(["v2:queued"]));

    // Both versions are listed; an unknown repository is a 404.
    let versions: Vec<String> = client
        .templates()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.version)
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    let err = client
        .checkout_template_repo(&TemplateRepository {
            url: "file:///nowhere/at/all".into(),
            branch: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let err = client
        .checkout_template_repo(&TemplateRepository {
            url: url.clone(),
            branch: Some("no-such-ref".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("no-such-ref"), "{err}");

    // After a restart the service is still on 1.1.0.
    robot.restart();
    let client = robot.god_client();
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            client
                .service(svc)
                .await
                .is_ok_and(|s| s.version == "1.1.0")
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repositories_added_at_run_time_come_back_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("more"),
        &[
            ("templates/thing/template.yaml", THING_V1),
            ("templates/thing/thing.lua", THING_LUA_V1),
            ("templates/broken/template.yaml", "version: nope\n"),
            ("templates/broken/broken.lua", "return {}"),
        ],
    );
    let log = tmp.path().join("robot.log");
    let mut robot = RobotProcess::start_logged(&tmp.path().join("data"), &["--god"], &log);
    let client = robot.god_client();
    assert!(client.templates().await.unwrap().is_empty());
    let url = format!("file://{}", repo.display());
    let added = client
        .add_template_repo(&TemplateRepository {
            url: url.clone(),
            branch: None,
        })
        .await
        .unwrap();
    assert_eq!(
        added.len(),
        1,
        "the broken template is left out, the good one loads"
    );
    assert_eq!(added[0].name, "thing");
    let svc = new_service(&client, "thing", "a").await;
    let bad = client
        .add_template_repo(&TemplateRepository {
            url: format!("file://{}/missing", tmp.path().display()),
            branch: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400));
    assert!(!tmp
        .path()
        .join("data/templates/local")
        .join("missing")
        .exists());

    let before = std::fs::read_to_string(&log).unwrap().len();
    robot.restart();
    let client = robot.god_client();
    assert_eq!(client.templates().await.unwrap().len(), 1);
    // Its repository is loaded before the services come back: the service is
    // there at once, counted, and no line warns of a missing template.
    assert!(client.service(svc).await.is_ok());
    let restart_log = std::fs::read_to_string(&log).unwrap()[before..].to_owned();
    assert!(
        restart_log.contains("services=1 waiting_tasks=0 waiting_for_templates=0"),
        "{restart_log}"
    );
    assert!(!restart_log.contains("not loaded"), "{restart_log}");
    let t = client
        .schedule(svc, "note", json!({"what": "back"}))
        .await
        .unwrap();
    assert_eq!(
        client
            .wait_done(svc, t.guid, Duration::from_secs(30))
            .await
            .unwrap()
            .state,
        TaskState::Ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_repository_does_not_keep_the_robot_from_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let robot = RobotProcess::start(
        &tmp.path().join("data"),
        &["--god", "-T", "https://127.0.0.1:1/acme/templates.git"],
    );
    let client = robot.god_client();
    let info = client.robot_info().await.unwrap();
    assert!(info.storage_healthy);
    assert!(client.templates().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_repository_receives_every_service() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("acme").join("things"),
        &[
            ("templates/thing/template.yaml", THING_V1),
            ("templates/thing/thing.lua", THING_LUA_V1),
        ],
    );
    let bare = tmp.path().join("data.git");
    git2::Repository::init_bare(&bare).unwrap();
    let mut robot = RobotProcess::start(
        &tmp.path().join("data"),
        &[
            "--god",
            "-T",
            &format!("file://{}", repo.display()),
            "--data-repo",
            &format!("file://{}", bare.display()),
        ],
    );
    let client = robot.god_client();
    let created = client
        .create_service(&ServiceCreate {
            template: "thing".into(),
            name: "exported".into(),
            data: json!({}),
            public: false,
        })
        .await
        .unwrap();
    let info = client.robot_info().await.unwrap();
    assert!(info.repositories.data.url.contains("data.git"), "{info:?}");
    // Stopping exports and pushes once more.
    robot.terminate();
    let check = tmp.path().join("check");
    // An empty bare repository gets the data on `main`.
    git2::build::RepoBuilder::new()
        .branch("main")
        .clone(&format!("file://{}", bare.display()), &check)
        .unwrap();
    let uid_path = check
        .join("local")
        .join("acme")
        .join("things")
        .join("thing")
        .join("exported")
        .join(created.service.guid.to_string());
    let service_yaml = std::fs::read_to_string(uid_path.join("service.yaml"))
        .unwrap_or_else(|e| panic!("{}: {e}", uid_path.display()));
    assert!(service_yaml.contains("exported"), "{service_yaml}");
    assert!(!service_yaml.contains(&created.secret));
    let data_yaml = std::fs::read_to_string(uid_path.join("data.yaml")).unwrap();
    assert!(data_yaml.contains("notes"), "{data_yaml}");
    assert!(uid_path.join("state.yaml").exists());
}

/// `zrobot template checkout` says what each service did and fails when a
/// service could not move; the REST API tells the same with `report=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_reports_each_service_and_fails_when_one_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let other = "version: 1.0.0\n";
    let repo = template_repo(
        &tmp.path().join("things"),
        &[
            ("templates/thing/template.yaml", THING_V1),
            ("templates/thing/thing.lua", THING_LUA_V1),
            ("templates/other/template.yaml", other),
            ("templates/other/other.lua", "return {}"),
        ],
    );
    let url = format!("file://{}", repo.display());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &url]);
    let client = robot.god_client();
    new_service(&client, "thing", "a").await;
    new_service(&client, "thing", "b").await;
    new_service(&client, "other", "c").await;
    let refusing = THING_LUA_V2.replace(
        "function t.migrate(self, from) self.data.from = from end",
        "function t.migrate(self, from)\n  if self.name == \"b\" then error(\"b cannot move\") end\n  self.data.from = from\nend",
    );
    commit_files(
        &repo,
        &[
            ("templates/thing/template.yaml", THING_V2),
            ("templates/thing/thing.lua", &refusing),
        ],
        Some("v2"),
    );

    let home = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(zrobot_bin())
            .args(args)
            .env("XDG_CONFIG_HOME", home.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let connect = cli(&[
        "robot",
        "connect",
        "r",
        &robot.url,
        "--god-token",
        &robot.god_token(),
    ]);
    assert!(connect.status.success(), "{connect:?}");
    let out = cli(&["template", "checkout", &url, "v2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text.contains("moved   a:"), "{text}");
    assert!(text.contains("thing/1.0.0 -> "), "{text}");
    assert!(
        text.contains("FAILED  b: stays on ") && text.contains("b cannot move"),
        "{text}"
    );
    assert!(text.contains("stayed  c: already on "), "{text}");
    assert!(
        text.contains("1 service(s) moved, 1 failed to move"),
        "{text}"
    );

    // The same from the API: now a is on the newest, b fails again.
    let report = client
        .checkout_template_repo_report(&TemplateRepository {
            url: url.clone(),
            branch: Some("v2".into()),
        })
        .await
        .unwrap();
    let outcome = |name: &str| {
        report
            .services
            .iter()
            .find(|m| m.service == name)
            .unwrap_or_else(|| panic!("{name} missing from {report:?}"))
            .clone()
    };
    use zrobot_client::wire::MoveOutcome;
    assert_eq!(outcome("a").outcome, MoveOutcome::Newest);
    let b = outcome("b");
    assert_eq!(b.outcome, MoveOutcome::Failed);
    assert!(
        b.from.ends_with("thing/1.0.0") && b.to.ends_with("thing/1.1.0"),
        "{b:?}"
    );
    assert!(b.why.unwrap().contains("b cannot move"));
    assert_eq!(outcome("c").outcome, MoveOutcome::Newest);
    assert_eq!(report.templates.len(), 2, "{report:?}");
}

/// A fix committed without a new version: the checkout loads it, says so,
/// and the service's next task runs it (no restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_without_a_new_version_runs_after_the_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("things"),
        &[
            ("templates/thing/template.yaml", THING_V1),
            ("templates/thing/thing.lua", THING_LUA_V1),
        ],
    );
    let url = format!("file://{}", repo.display());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &url]);
    let client = robot.god_client();
    let svc = new_service(&client, "thing", "a").await;
    let run_note = |what: &'static str| {
        let client = client.clone();
        async move {
            let t = client
                .schedule(svc, "note", json!({ "what": what }))
                .await
                .unwrap();
            let t = client
                .wait_done(svc, t.guid, Duration::from_secs(30))
                .await
                .unwrap();
            assert_eq!(t.state, TaskState::Ok, "{t:?}");
        }
    };
    run_note("before").await;
    commit_files(
        &repo,
        &[(
            "templates/thing/thing.lua",
            &THING_LUA_V1.replace("\"v1:\"", "\"fixed:\""),
        )],
        Some("fix"),
    );
    let report = client
        .checkout_template_repo_report(&TemplateRepository {
            url: url.clone(),
            branch: Some("fix".into()),
        })
        .await
        .unwrap();
    let a = &report.services[0];
    assert_eq!(
        (a.service.as_str(), a.outcome),
        ("a", zrobot_client::wire::MoveOutcome::Reloaded),
        "{report:?}"
    );
    assert_eq!(report.commit.len(), 40, "{report:?}");
    // The template names the commit its code comes from.
    let listed = client.templates().await.unwrap();
    assert_eq!(listed[0].commit.as_deref(), Some(report.commit.as_str()));
    run_note("after").await;
    let s = client.service(svc).await.unwrap();
    assert_eq!(s.version, "1.0.0");
    assert_eq!(
        s.data.unwrap()["notes"],
        json!(["v1:before", "fixed:after"])
    );
    let logs = client.logs(svc).await.unwrap().logs;
    assert!(logs.contains("runs the new code of"), "{logs}");

    // The same commit again changes nothing.
    let again = client
        .checkout_template_repo_report(&TemplateRepository {
            url: url.clone(),
            branch: Some("fix".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        again.services[0].outcome,
        zrobot_client::wire::MoveOutcome::Newest,
        "{again:?}"
    );
}

/// A start whose `-T` revision no longer has a service's version moves the
/// service to the version it has, as a checkout would: the new code's
/// `migrate`, the new defaults, `validate`. A move that fails leaves the
/// service running nothing, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_on_a_newer_revision_migrates_the_services() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("things"),
        &[
            ("templates/thing/template.yaml", THING_V1),
            ("templates/thing/thing.lua", THING_LUA_V1),
        ],
    );
    tag_head(&repo, "v1");
    let url = format!("file://{}", repo.display());
    let mut robot = RobotProcess::start(
        &tmp.path().join("data"),
        &["--god", "-T", &format!("{url}#v1")],
    );
    let client = robot.god_client();
    let svc = new_service(&client, "thing", "a").await;
    let t = client
        .schedule(svc, "note", json!({"what": "x"}))
        .await
        .unwrap();
    client
        .wait_done(svc, t.guid, Duration::from_secs(30))
        .await
        .unwrap();

    // 1.1.0 replaces 1.0.0 in the repository, with a migrate and a default.
    // `colour` is required: its default fills it after migrate, which
    // leaves it out.
    let v2 = "version: 1.1.0\ndata: {type: object, required: [colour], properties: {notes: {type: array, default: []}, from: {type: string}, colour: {type: string, default: blue}}}\n";
    commit_files(
        &repo,
        &[
            ("templates/thing/template.yaml", v2),
            ("templates/thing/thing.lua", THING_LUA_V2),
        ],
        Some("v2"),
    );
    robot.args = vec!["--god".into(), "-T".into(), format!("{url}#v2")];
    robot.restart();
    let client = robot.god_client();
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            client
                .service(svc)
                .await
                .is_ok_and(|s| s.data.is_some_and(|d| d["from"] == "1.0.0"))
        })
        .await,
        "{:?}",
        client.service(svc).await
    );
    let s = client.service(svc).await.unwrap();
    assert_eq!(s.version, "1.1.0");
    let data = s.data.unwrap();
    assert_eq!(data["notes"], json!(["v1:x"]));
    assert_eq!(data["colour"], "blue");
    let logs = client.logs(svc).await.unwrap().logs;
    assert!(logs.contains("moved from"), "{logs}");
    let t = client
        .schedule(svc, "note", json!({"what": "y"}))
        .await
        .unwrap();
    let done = client
        .wait_done(svc, t.guid, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::Ok);
    // Stored: a plain restart keeps it on 1.1.0, moved once.
    robot.restart();
    let client = robot.god_client();
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            client
                .service(svc)
                .await
                .is_ok_and(|s| s.version == "1.1.0")
        })
        .await
    );

    // 1.2.0's migrate fails: the service stays as it was, runs nothing, and
    // its state table and log say why.
    let v3_lua = "local t = {}\nfunction t.migrate(self, from) error('cannot move from ' .. from) end\nfunction t.note(self, args) end\nreturn t\n";
    commit_files(
        &repo,
        &[
            ("templates/thing/template.yaml", "version: 1.2.0\n"),
            ("templates/thing/thing.lua", v3_lua),
        ],
        Some("v3"),
    );
    robot.args = vec!["--god".into(), "-T".into(), format!("{url}#v3")];
    robot.restart();
    let client = robot.god_client();
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            client.service(svc).await.is_ok_and(|s| {
                s.state
                    .iter()
                    .any(|st| st.category == "upgrade" && st.tag == "1.2.0")
            })
        })
        .await
    );
    let logs = client.logs(svc).await.unwrap().logs;
    assert!(
        logs.contains("no longer loaded and moving to") && logs.contains("cannot move from 1.1.0"),
        "{logs}"
    );
    let t = client
        .schedule(svc, "note", json!({"what": "z"}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = client.task(svc, t.guid).await.unwrap();
    assert_eq!(
        waiting.state,
        TaskState::New,
        "no task runs on unmoved data"
    );
}

/// A robot started on an empty data directory with a data repository takes
/// its services back from it: identity, template version, data and state.
/// Their secrets never were there: an admin or the god token manages them.
/// A robot that has services of its own ignores the repository's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_robot_restores_the_services_of_its_data_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("acme").join("things"),
        &[
            ("templates/thing/template.yaml", THING_V1),
            ("templates/thing/thing.lua", THING_LUA_V1),
        ],
    );
    let bare = tmp.path().join("data.git");
    git2::Repository::init_bare(&bare).unwrap();
    let args = |_: ()| {
        vec![
            "--god".to_owned(),
            "-T".to_owned(),
            format!("file://{}", repo.display()),
            "--data-repo".to_owned(),
            format!("file://{}", bare.display()),
        ]
    };
    let first_args = args(());
    let first: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let mut old = RobotProcess::start(&tmp.path().join("old"), &first);
    let client = old.god_client();
    let svc = new_service(&client, "thing", "kept").await;
    let t = client
        .schedule(svc, "note", json!({"what": "before"}))
        .await
        .unwrap();
    client
        .wait_done(svc, t.guid, Duration::from_secs(30))
        .await
        .unwrap();
    old.terminate();

    // The host is lost; a new one starts on an empty data directory.
    let log = tmp.path().join("new.log");
    let mut new = RobotProcess::start_logged(&tmp.path().join("new"), &first, &log);
    let client = new.god_client();
    let back = client.service(svc).await.unwrap();
    assert_eq!(back.name, "kept");
    assert_eq!(back.version, "1.0.0");
    assert_eq!(back.data.unwrap()["notes"], json!(["v1:before"]));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("services restored from the data repository") && text.contains("services=1"),
        "{text}"
    );
    let t = client
        .schedule(svc, "note", json!({"what": "after"}))
        .await
        .unwrap();
    assert_eq!(
        client
            .wait_done(svc, t.guid, Duration::from_secs(30))
            .await
            .unwrap()
            .state,
        TaskState::Ok
    );
    // Stored: a restart brings it back from its own database.
    new.restart();
    let client = new.god_client();
    let again = client.service(svc).await.unwrap();
    assert_eq!(
        again.data.unwrap()["notes"],
        json!(["v1:before", "v1:after"])
    );
}

const ADMIN_LUA: &str = r#"
local a = {}
function a.add(self, args) return robot.templates.add_repo(args.url) end
function a.checkout(self, args) return robot.templates.checkout_repo(args.url, args.ref) end
return a
"#;

/// Template code adds and checks out template repositories (0-robot's
/// `self.api.templates`), only on a robot started with
/// --allow-template-repos-from-templates; checking out its own repository
/// does not hang the action that asks, and its service moves afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_code_adds_repositories_only_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let own = template_repo(
        &tmp.path().join("own"),
        &[
            ("templates/admin/template.yaml", "version: 1.0.0\n"),
            ("templates/admin/admin.lua", ADMIN_LUA),
        ],
    );
    tag_head(&own, "v1");
    let extra = template_repo(
        &tmp.path().join("extra"),
        &[
            ("templates/thing/template.yaml", THING_V1),
            ("templates/thing/thing.lua", THING_LUA_V1),
        ],
    );
    let own_url = format!("file://{}", own.display());
    let extra_url = format!("file://{}", extra.display());
    let own_v1 = format!("{own_url}#v1");
    let mut robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &own_v1]);
    let client = robot.god_client();
    let admin = new_service(&client, "admin", "admin").await;
    let run = |action: &'static str, args: serde_json::Value| {
        let client = robot.god_client();
        async move {
            let t = client.schedule(admin, action, args).await.unwrap();
            client
                .wait_done(admin, t.guid, Duration::from_secs(60))
                .await
                .unwrap()
        }
    };
    let refused = run("add", json!({"url": extra_url})).await;
    assert_eq!(refused.state, TaskState::Error);
    assert!(
        refused
            .eco
            .unwrap()
            .message
            .contains("--allow-template-repos-from-templates"),
        "refused without the flag"
    );

    robot.args = vec![
        "--god".into(),
        "-T".into(),
        own_v1.clone(),
        "--allow-template-repos-from-templates".into(),
    ];
    robot.restart();
    let client = robot.god_client();
    let run = |action: &'static str, args: serde_json::Value| {
        let client = robot.god_client();
        async move {
            let t = client.schedule(admin, action, args).await.unwrap();
            client
                .wait_done(admin, t.guid, Duration::from_secs(60))
                .await
                .unwrap()
        }
    };
    let added = run("add", json!({"url": extra_url})).await;
    assert_eq!(added.state, TaskState::Ok, "{:?}", added.eco);
    let r = added.result_value().unwrap();
    assert_eq!(r["commit"].as_str().unwrap().len(), 40, "{r}");
    assert!(
        r["templates"][0]
            .as_str()
            .unwrap()
            .ends_with("/thing/1.0.0"),
        "{r}"
    );
    assert!(client
        .templates()
        .await
        .unwrap()
        .iter()
        .any(|t| t.name == "thing"));
    let thing = new_service(&client, "thing", "t1").await;

    commit_files(
        &extra,
        &[
            ("templates/thing/template.yaml", THING_V2),
            ("templates/thing/thing.lua", THING_LUA_V2),
        ],
        Some("v2"),
    );
    let out = run("checkout", json!({"url": extra_url, "ref": "v2"})).await;
    assert_eq!(out.state, TaskState::Ok, "{:?}", out.eco);
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            client
                .service(thing)
                .await
                .is_ok_and(|s| s.version == "1.1.0")
        })
        .await
    );

    // Its own repository: the action ends, then its service moves.
    commit_files(
        &own,
        &[("templates/admin/template.yaml", "version: 1.1.0\n")],
        Some("v2"),
    );
    let started = std::time::Instant::now();
    let out = run("checkout", json!({"url": own_v1, "ref": "v2"})).await;
    assert_eq!(out.state, TaskState::Ok, "{:?}", out.eco);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            client
                .service(admin)
                .await
                .is_ok_and(|s| s.version == "1.1.0")
        })
        .await
    );

    let never = run(
        "checkout",
        json!({"url": "file:///no/such/repo", "ref": "main"}),
    )
    .await;
    assert_eq!(never.state, TaskState::Error);
    assert!(never.eco.unwrap().message.contains("was never added"));
}
