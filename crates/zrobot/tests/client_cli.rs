//! The client commands of the `zrobot` binary, run for real against real
//! robot processes: every subcommand, `--json` read field by field, exit
//! codes, the config file, secrets, JWT credentials, and the demo.

mod util;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::*;

const ECHO_YAML: &str = r#"
version: 1.0.0
data:
  type: object
  properties:
    port: {type: integer, default: 1}
    tags: {type: array, items: {type: string}, default: []}
    nested: {type: object, default: {}, properties: {key: {type: string}}}
actions:
  hello:
    args: {type: object, properties: {x: {type: integer}}}
"#;
const ECHO_LUA: &str = r#"
local e = {}
function e.hello(self, args)
  self.log:info("hello " .. tostring(args.x))
  self.state:set("hello", "said", "ok")
  return {x = args.x, port = self.data.port, tags = self.data.tags, key = self.data.nested.key}
end
function e.fail(self) error("boom: this action fails on purpose") end
function e.slow(self) robot.sleep(30) end
return e
"#;

fn echo_repo(dir: &Path) -> String {
    let repo = template_repo(
        &dir.join("echo-repo"),
        &[
            ("templates/echo/template.yaml", ECHO_YAML),
            ("templates/echo/echo.lua", ECHO_LUA),
        ],
    );
    format!("file://{}", repo.display())
}

/// The CLI with its own config directory, and no robot from the environment.
struct Cli {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().unwrap(),
            env: vec![],
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("zrobot")
    }

    fn config(&self) -> Value {
        let text = std::fs::read_to_string(self.config_dir().join("config.yaml")).unwrap();
        zrobot_core::yaml::from_str(&text).unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(zrobot_bin());
        c.args(args)
            .env("XDG_CONFIG_HOME", self.home.path())
            .env_remove("ZROBOT_URL")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and returns (exit code, stdout, stderr).
    fn code(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.run(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs, expects exit 0, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.code(args);
        assert_eq!(code, 0, "zrobot {args:?}\nstdout: {out}\nstderr: {err}");
        out
    }

    /// Runs with --json, expects `code`, returns the parsed stdout.
    fn json_with(&self, code: i32, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (got, out, err) = self.code(&all);
        assert_eq!(got, code, "zrobot {all:?}\nstdout: {out}\nstderr: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("zrobot {all:?} printed no JSON ({e}): {out}"))
    }

    fn json(&self, args: &[&str]) -> Value {
        self.json_with(0, args)
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The decoded `result` of a task as the API shows it (a JSON string).
fn result_of(task: &Value) -> Value {
    serde_json::from_str(task["result"].as_str().expect("a result string")).unwrap()
}

fn is_guid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
}

#[test]
fn every_client_command_against_an_open_robot() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = echo_repo(tmp.path());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let cli = Cli::new();

    // robot connect / list / info, and the config file it writes.
    cli.ok(&["robot", "connect", "local", &robot.url]);
    let file = cli.config_dir().join("config.yaml");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&cli.config_dir()), 0o700);
    let robots = cli.json(&["robot", "list"]);
    assert_eq!(
        robots,
        json!([{"name": "local", "url": robot.url, "current": true, "credentials": "none", "services": []}])
    );
    let info = cli.json(&["robot", "info"]);
    assert_eq!(info["name"], "local");
    assert_eq!(info["url"], robot.url.as_str());
    assert_eq!(info["info"]["storage_healthy"], true);
    assert!(info["info"]["repositories"]["config"]["url"].is_string());
    assert!(info["info"]["repositories"]["data"]["url"].is_string());
    assert_eq!(info["metrics"]["nr_services"], 0);
    assert!(info["metrics"]["memory"]["total"].as_u64().unwrap() > 0);
    assert!(cli.ok(&["robot", "info"]).contains("healthy"));
    assert!(cli.ok(&["robot", "list"]).contains(&robot.url));

    // template list
    let templates = cli.json(&["template", "list"]);
    let echo = &templates.as_array().unwrap()[0];
    assert!(echo["uid"].as_str().unwrap().ends_with("/echo/1.0.0"));
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["version"], "1.0.0");
    assert!(echo["host"].is_string() && echo["account"].is_string());
    assert!(echo["repository"].is_string());
    assert!(cli.ok(&["template", "list"]).contains("echo"));

    // service create: -d values read as YAML, dotted keys nest; the secret is stored.
    let created = cli.json(&[
        "service",
        "create",
        "echo",
        "s1",
        "-d",
        "port=22",
        "-d",
        "tags=[a, b]",
        "-d",
        "nested.key=v",
    ]);
    assert_eq!(created["name"], "s1");
    assert!(is_guid(&created["guid"]));
    assert!(created["template"]
        .as_str()
        .unwrap()
        .ends_with("/echo/1.0.0"));
    assert_eq!(created["version"], "1.0.0");
    assert_eq!(created["public"], false);
    assert_eq!(created["state"], json!([]));
    let secret = created["secret"].as_str().unwrap();
    assert!(!secret.is_empty());
    let guid = created["guid"].as_str().unwrap().to_owned();
    let config = cli.config();
    assert_eq!(config["current"], "local");
    assert_eq!(
        config["robots"]["local"]["secrets"][&guid],
        json!({"name": "s1", "secret": secret})
    );
    assert_eq!(mode(&file), 0o600);
    // A second service, for the slow and cancelled tasks; a data file under -d.
    let data_file = tmp.path().join("s2.json");
    std::fs::write(&data_file, r#"{"port": 5, "nested": {"key": "f"}}"#).unwrap();
    let s2 = cli.json(&[
        "service",
        "create",
        "echo",
        "s2",
        "--data-file",
        data_file.to_str().unwrap(),
        "-d",
        "port=6",
        "--public",
    ]);
    assert_eq!(s2["public"], true);
    assert!(cli
        .ok(&["service", "create", "echo", "s3"])
        .contains("service `s3`"));

    // service list and its filters.
    let all = cli.json(&["service", "list"]);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{all}");
    for n in ["s1", "s2", "s3"] {
        assert!(names.contains(&n), "{all}");
    }
    let one = cli.json(&["service", "list", "--name", "s1", "--template-name", "echo"]);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["guid"], guid.as_str());
    assert_eq!(
        cli.json(&["service", "list", "--template-version", "9.9.9"]),
        json!([])
    );
    assert!(cli.ok(&["service", "list"]).contains("s2"));

    // service get, by name and by guid; data only for the god token.
    let by_name = cli.json(&["service", "get", "s1"]);
    let by_guid = cli.json(&["service", "get", &guid]);
    assert_eq!(by_name, by_guid);
    assert_eq!(by_name["name"], "s1");
    assert!(by_name.get("data").is_none(), "{by_name}");
    cli.ok(&[
        "robot",
        "connect",
        "local",
        &robot.url,
        "--god-token",
        &robot.god_token(),
    ]);
    assert_eq!(
        cli.config()["robots"]["local"]["secrets"][&guid]["secret"],
        secret
    );
    let god_view = cli.json(&["service", "get", "s1"]);
    assert_eq!(
        god_view["data"],
        json!({"port": 22, "tags": ["a", "b"], "nested": {"key": "v"}})
    );
    assert_eq!(
        cli.json(&["service", "get", "s2"])["data"],
        json!({"port": 6, "tags": [], "nested": {"key": "f"}})
    );
    assert!(cli.ok(&["service", "get", "s1"]).contains(&guid));

    // service actions
    let actions = cli.json(&["service", "actions", "s1"]);
    let hello = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "hello")
        .unwrap();
    assert_eq!(hello["arguments"], json!(["x"]));
    assert_eq!(
        hello["arguments_schema"]["properties"]["x"]["type"],
        "integer"
    );
    assert!(actions
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "fail"));
    assert!(cli.ok(&["service", "actions", "s1"]).contains("x: integer"));

    // task schedule --wait: 0 on ok, 1 on a failing action, with the eco.
    let done = cli.json(&["task", "schedule", "s1", "hello", "-a", "x=5", "--wait"]);
    assert_eq!(done["state"], "ok");
    assert_eq!(done["action_name"], "hello");
    assert_eq!(done["service_name"], "s1");
    assert_eq!(done["service_guid"], guid.as_str());
    assert_eq!(done["args"], json!({"x": 5}));
    assert!(done["eco"].is_null());
    assert!(done["duration"].is_number());
    assert_eq!(
        result_of(&done),
        json!({"x": 5, "port": 22, "tags": ["a", "b"], "key": "v"})
    );
    let failed = cli.json_with(1, &["task", "schedule", "s1", "fail", "--wait"]);
    assert_eq!(failed["state"], "error");
    assert!(failed["eco"]["message"]
        .as_str()
        .unwrap()
        .contains("boom: this action fails on purpose"));
    let (code, out, _) = cli.code(&["task", "schedule", "s1", "fail", "--wait"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("boom: this action fails on purpose"), "{out}");
    assert!(out.contains("1 task(s): 0 ok, 1 failed"), "{out}");
    let args_file = tmp.path().join("args.yaml");
    std::fs::write(&args_file, "x: 9\n").unwrap();
    let from_file = cli.json(&[
        "task",
        "schedule",
        "s1",
        "hello",
        "--args-file",
        args_file.to_str().unwrap(),
        "--wait",
    ]);
    assert_eq!(from_file["args"], json!({"x": 9}));
    let out = cli.ok(&["task", "schedule", "s1", "hello", "-a", "x=6", "--wait"]);
    assert!(out.contains("1 task(s): 1 ok, 0 failed"), "{out}");

    // task list, task get
    let history = cli.json(&["task", "list", "s1", "--all"]);
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 5, "{history:?}");
    assert_eq!(history.iter().filter(|t| t["state"] == "error").count(), 2);
    let waiting = cli.json(&["task", "list", "s1"]);
    assert_eq!(waiting, json!([]));
    let task_guid = done["guid"].as_str().unwrap();
    let got = cli.json(&["task", "get", "s1", task_guid]);
    assert_eq!(got["guid"], task_guid);
    assert_eq!(got["state"], "ok");
    assert_eq!(got["result"], done["result"]);
    assert!(got["created"].is_i64());
    assert!(cli
        .ok(&["task", "get", "s1", task_guid])
        .contains("\"port\": 22"));

    // task schedule without --wait, and task cancel: a waiting task is
    // cancelled, a running one cannot be.
    let slow = cli.json(&["task", "schedule", "s2", "slow"]);
    assert!(
        slow["state"] == "new" || slow["state"] == "running",
        "{slow}"
    );
    let queued = cli.json(&["task", "schedule", "s2", "hello", "-a", "x=1"]);
    assert_eq!(queued["state"], "new");
    let cancelled = cli.json(&["task", "cancel", "s2", queued["guid"].as_str().unwrap()]);
    assert_eq!(cancelled["state"], "error");
    assert_eq!(cancelled["eco"]["cat"], "task.cancelled");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = cli.json(&["task", "get", "s2", slow["guid"].as_str().unwrap()]);
        if t["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the slow task never ran: {t}");
    }
    let (code, _, err) = cli.code(&["task", "cancel", "s2", slow["guid"].as_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("answered 409"), "{err}");
    let listed = cli.json(&["task", "list", "s2"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["guid"], slow["guid"]);

    // service logs, and -f printing new lines only.
    assert!(cli.ok(&["service", "logs", "s1"]).contains("hello 5"));
    assert!(cli.json(&["service", "logs", "s1"])["logs"]
        .as_str()
        .unwrap()
        .contains("hello 6"));
    let mut follower = cli
        .command(&["service", "logs", "s1", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |seen: &mut Vec<String>, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !seen.iter().any(|l: &String| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("`service logs -f` never printed `{needle}`: {seen:?}"),
            }
        }
    };
    wait_for(&mut seen, "hello 6");
    cli.ok(&["task", "schedule", "s1", "hello", "-a", "x=77", "--wait"]);
    wait_for(&mut seen, "hello 77");
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(
        seen.iter().filter(|l| l.ends_with("] hello 5")).count(),
        1,
        "{seen:?}"
    );

    // webhooks
    let hook = cli.json(&["webhook", "add", "http://127.0.0.1:9/hook"]);
    assert_eq!(hook["kind"], "eco");
    assert_eq!(hook["url"], "http://127.0.0.1:9/hook");
    let id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(cli.json(&["webhook", "list"]), json!([hook]));
    assert!(cli.ok(&["webhook", "list"]).contains(&id));
    assert_eq!(
        cli.json(&["webhook", "delete", &id]),
        json!({"id": id, "deleted": true})
    );
    assert_eq!(cli.json(&["webhook", "list"]), json!([]));
    let (code, _, err) = cli.code(&["webhook", "add", "ftp://nowhere"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("answered 400"), "{err}");

    // blueprint execute --wait: secrets stored, tasks followed.
    let bp = tmp.path().join("bp.yaml");
    std::fs::write(
        &bp,
        "services:\n  - echo__b1:\n      port: 7\nactions:\n  - service: b1\n    actions: [hello]\n    args: {x: 3}\n",
    )
    .unwrap();
    let result = cli.json(&["blueprint", "execute", bp.to_str().unwrap(), "--wait"]);
    assert_eq!(result["services"][0]["name"], "b1");
    let b1 = result["services"][0]["guid"].as_str().unwrap().to_owned();
    assert_eq!(
        cli.config()["robots"]["local"]["secrets"][&b1]["secret"],
        result["services"][0]["secret"]
    );
    assert_eq!(result["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(result["tasks"][0]["state"], "ok");
    assert_eq!(result_of(&result["tasks"][0])["port"], 7);
    let bad_bp = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad_bp,
        "actions:\n  - service: b1\n    actions: [hello, fail]\n",
    )
    .unwrap();
    let (code, out, _) = cli.code(&["blueprint", "execute", bad_bp.to_str().unwrap(), "--wait"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("2 task(s): 1 ok, 1 failed"), "{out}");
    let unknown_bp = tmp.path().join("unknown.yaml");
    std::fs::write(&unknown_bp, "services:\n  - nosuch__x: {}\n").unwrap();
    let (code, _, err) = cli.code(&["blueprint", "execute", unknown_bp.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("answered 400") && err.contains("nosuch"),
        "{err}"
    );
    let out = cli.ok(&["blueprint", "execute", bp.to_str().unwrap()]);
    assert!(out.contains("hello"), "{out}");

    // service delete forgets the secret; the service is then unknown.
    assert_eq!(
        cli.json(&["service", "delete", "s1"]),
        json!({"guid": guid, "deleted": true, "on_delete_failed": []})
    );
    assert!(cli.config()["robots"]["local"]["secrets"]
        .get(&guid)
        .is_none());
    let (code, _, err) = cli.code(&["service", "get", "s1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no service named `s1`"), "{err}");
    let (code, _, err) = cli.code(&["service", "get", &guid]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("answered 404"), "{err}");

    // ZROBOT_URL and --robot pick the robot over the config's current one.
    let other = Cli::new();
    let (code, _, err) = other.code(&["service", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("zrobot robot connect"), "{err}");
    let by_flag = other.json(&["--robot", &robot.url, "service", "list"]);
    assert_eq!(by_flag.as_array().unwrap().len(), 3, "{by_flag}");
    let mut env = Cli::new();
    env.env.push(("ZROBOT_URL".into(), robot.url.clone()));
    assert_eq!(env.json(&["service", "list"]), by_flag);
    // A service created through a URL alone keeps its secret under that URL.
    env.json(&["service", "create", "echo", "by-url"]);
    let stored = env.config();
    assert_eq!(
        stored["robots"][robot.url.as_str()]["secrets"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
    let (code, _, err) = cli.code(&["--robot", "nope", "service", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no robot named `nope`"), "{err}");
}

#[test]
fn template_repositories_are_added_and_checked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = echo_repo(tmp.path());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let extra = template_repo(
        &tmp.path().join("extra"),
        &[
            ("templates/extra/template.yaml", "version: 1.0.0\n"),
            ("templates/extra/extra.lua", "return {}"),
        ],
    );
    tag_head(&extra, "v1");
    commit_files(
        &extra,
        &[("templates/extra/template.yaml", "version: 1.1.0\n")],
        Some("v2"),
    );
    let extra_url = format!("file://{}", extra.display());
    let cli = Cli::new();
    cli.ok(&["robot", "connect", "local", &robot.url]);

    let added = cli.json(&["template", "add", &format!("{extra_url}#v1")]);
    assert_eq!(added.as_array().unwrap().len(), 1, "{added}");
    assert_eq!(added[0]["name"], "extra");
    assert_eq!(added[0]["version"], "1.0.0");
    let checked = cli.json(&["template", "checkout", &extra_url, "v2"]);
    assert_eq!(checked["templates"][0]["version"], "1.1.0", "{checked}");
    assert_eq!(checked["services"], json!([]), "{checked}");
    let all = cli.json(&["template", "list"]);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "extra" && t["version"] == "1.1.0"),
        "{all}"
    );

    let (code, _, err) = cli.code(&["template", "add", "file:///no/such/repository"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("answered 4"), "{err}");
    let (code, _, err) = cli.code(&["template", "checkout", "file:///no/such/repository", "v1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("answered 4"), "{err}");
}

/// An `on_delete` action that fails: the service is still deleted, but the
/// CLI says which action failed and why, and exits 1.
#[test]
fn a_failed_on_delete_is_said_not_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("fragile-repo"),
        &[
            (
                "templates/fragile/template.yaml",
                "version: 1.0.0\non_delete: [uninstall]\n",
            ),
            (
                "templates/fragile/fragile.lua",
                "return {uninstall = function(self) error('the disk is gone') end}",
            ),
        ],
    );
    let url = format!("file://{}", repo.display());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &url]);
    let cli = Cli::new();
    cli.ok(&["robot", "connect", "local", &robot.url]);
    cli.ok(&["service", "create", "fragile", "f1"]);
    let (code, out, err) = cli.code(&["service", "delete", "f1"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("deleted"), "{out}");
    assert!(
        err.contains("on_delete action `uninstall` failed") && err.contains("the disk is gone"),
        "{err}"
    );
    let (code, _, err) = cli.code(&["service", "get", "f1"]);
    assert_ne!(code, 0, "the service is gone: {err}");
    // With --json, the failures are in the output too.
    cli.ok(&["service", "create", "fragile", "f2"]);
    let deleted = cli.json_with(1, &["service", "delete", "f2"]);
    assert_eq!(deleted["deleted"], true, "{deleted}");
    assert_eq!(
        deleted["on_delete_failed"][0]["action"], "uninstall",
        "{deleted}"
    );
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = echo_repo(tmp.path());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let cli = Cli::new();
    cli.ok(&["robot", "connect", "local", &robot.url]);

    // An unknown service: a failure the robot reports, 1.
    let (code, _, err) = cli.code(&["service", "get", "nosuch"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("zrobot service list"), "{err}");
    let (code, _, err) = cli.code(&["task", "list", &uuid::Uuid::new_v4().to_string()]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = cli.code(&["service", "create", "nosuch-template", "x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("answered 400"), "{err}");

    // A robot that does not answer: 3, and what to do.
    let (code, _, err) = cli.code(&["--robot", "http://127.0.0.1:1", "service", "list"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("is it running? start it with `zrobot server start`"),
        "{err}"
    );
    // After the command's name too.
    let (code, _, err) = cli.code(&["service", "list", "--robot", "http://127.0.0.1:1"]);
    assert_eq!(code, 3, "{err}");
    cli.ok(&["robot", "connect", "gone", "http://127.0.0.1:1"]);
    let (code, _, err) = cli.code(&["robot", "info"]);
    assert_eq!(code, 3, "{err}");
    cli.ok(&["robot", "use", "local"]);

    // Usage errors: 2.
    let (code, _, err) = cli.code(&["service", "list", "--bogus"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli.code(&["service", "create", "echo", "x", "-d", "nokeyvalue"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("key=value"), "{err}");
    let (code, _, err) = cli.code(&["robot", "use", "nosuch"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("known: gone, local"), "{err}");
    let (code, _, _) = cli.code(&["task", "get", "s", "not-a-guid"]);
    assert_eq!(code, 2);

    // A blueprint file: a YAML error names the file and line; the robot's
    // problems come all at once, each at the line of its block; nothing is made.
    let bp = tmp.path().join("bp.yaml");
    std::fs::write(
        &bp,
        "services:\n  - echo__b1:\n      port: 1\n     tags: []\n",
    )
    .unwrap();
    let (code, _, err) = cli.code(&["blueprint", "execute", bp.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("--> {}:4:6", bp.display()))
            && err.contains("line 4 is not indented"),
        "{err}"
    );
    std::fs::write(
        &bp,
        "services:\n  - echo__b1:\n      port: one\n  - echo__b2:\n      tags: [1]\nactions:\n  - service: b1\n    actions: [hello]\n",
    )
    .unwrap();
    let (code, _, err) = cli.code(&["blueprint", "execute", bp.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("answered 400: 2 problems:"), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2: services[0] (echo__b1): invalid data",
            bp.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:4: services[1] (echo__b2): invalid data",
            bp.display()
        )),
        "{err}"
    );
    let (code, _, _) = cli.code(&["service", "get", "b1"]);
    assert_eq!(code, 1, "nothing was made");

    // The current robot, and forgetting one.
    assert_eq!(
        cli.ok(&["robot", "current"]).trim(),
        format!("local {}", robot.url)
    );
    assert!(cli
        .ok(&["robot", "delete", "gone"])
        .contains("robot `gone` forgotten"));
    assert!(!cli.ok(&["robot", "list"]).contains("gone"));
    let (code, _, err) = cli.code(&["robot", "delete", "gone"]);
    assert_eq!(code, 2, "{err}");
    cli.ok(&["service", "create", "echo", "kept"]);
    let (code, _, err) = cli.code(&["robot", "delete", "local"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("holds the secrets of 1 service(s)") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        cli.json(&["robot", "delete", "local", "--force"]),
        json!({"deleted": "local", "secrets_lost": 1})
    );
    let (code, _, err) = cli.code(&["robot", "current"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no robot is current"), "{err}");

    // Completions for each shell.
    assert!(cli.ok(&["completions", "bash"]).contains("_zrobot"));
    assert!(cli.ok(&["completions", "zsh"]).contains("#compdef zrobot"));
    assert!(cli
        .ok(&["completions", "fish"])
        .contains("complete -c zrobot"));
}

#[test]
fn commands_run_at_once_keep_every_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = echo_repo(tmp.path());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let cli = Cli::new();
    cli.ok(&["robot", "connect", "local", &robot.url]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            cli.command(&["service", "create", "echo", &format!("p{i}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let secrets = &cli.config()["robots"]["local"]["secrets"];
    assert_eq!(secrets.as_object().unwrap().len(), 8, "{secrets}");
}

const JWT_KEY: &str = "a shared HS256 secret for the tests";

fn jwt(scope: &str, exp_in: i64) -> String {
    zrobot_testkit::jwt::sign(JWT_KEY.as_bytes(), json!([scope]), exp_in, "tester")
}

#[test]
fn a_stored_secret_manages_its_service_on_a_robot_with_jwt_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = echo_repo(tmp.path());
    let key = tmp.path().join("jwt.key");
    std::fs::write(&key, JWT_KEY).unwrap();
    let robot = RobotProcess::start(
        &tmp.path().join("data"),
        &[
            "-T",
            &repo,
            "--jwt-key",
            key.to_str().unwrap(),
            "--admin-organization",
            "admins",
            "--user-organization",
            "users",
        ],
    );
    let user = jwt("user:memberof:users", 3600);
    let cli = Cli::new();
    cli.ok(&["robot", "connect", "r", &robot.url, "--jwt", &user]);
    let created = cli.json(&["service", "create", "echo", "mine"]);
    let guid = created["guid"].as_str().unwrap().to_owned();
    assert_eq!(cli.config()["robots"]["r"]["jwt"], user.as_str());

    // Another user's service, made with another config.
    let other = Cli::new();
    other.ok(&["robot", "connect", "r", &robot.url, "--jwt", &user]);
    let theirs = other.json(&["service", "create", "echo", "theirs"]);

    // Without the JWT, only the stored secret speaks for the CLI.
    cli.ok(&["robot", "connect", "r", &robot.url]);
    let config = cli.config();
    assert!(config["robots"]["r"].get("jwt").is_none(), "{config}");
    assert_eq!(
        config["robots"]["r"]["secrets"][&guid]["secret"],
        created["secret"]
    );
    let done = cli.json(&["task", "schedule", "mine", "hello", "-a", "x=2", "--wait"]);
    assert_eq!(done["state"], "ok");
    assert_eq!(result_of(&done)["x"], 2);
    let failed = cli.json_with(1, &["task", "schedule", &guid, "fail", "--wait"]);
    assert_eq!(failed["state"], "error");
    let visible = cli.json(&["service", "list"]);
    assert_eq!(visible.as_array().unwrap().len(), 1, "{visible}");
    assert_eq!(visible[0]["name"], "mine");

    // A service without a stored secret: refused, with what to do.
    let (code, _, err) = cli.code(&["task", "schedule", "theirs", "hello"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no service named `theirs`") && err.contains("--jwt"),
        "{err}"
    );
    let (code, _, err) = cli.code(&[
        "task",
        "schedule",
        theirs["guid"].as_str().unwrap(),
        "hello",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no secret is stored"), "{err}");
    assert!(err.contains("zrobot robot connect r"), "{err}");
    // Admin commands name the credential they need.
    let (code, _, err) = cli.code(&["webhook", "list"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("this needs an admin"), "{err}");
    cli.ok(&["robot", "connect", "r", &robot.url, "--jwt", &user]);
    let (code, _, err) = cli.code(&["template", "add", "file:///x"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("answered 403") && err.contains("admin"),
        "{err}"
    );
    // An admin may.
    cli.ok(&[
        "robot",
        "connect",
        "r",
        &robot.url,
        "--jwt",
        &jwt("user:memberof:admins", 3600),
    ]);
    assert_eq!(cli.json(&["webhook", "list"]), json!([]));
    assert_eq!(cli.json(&["service", "list"]).as_array().unwrap().len(), 2);
    // An expired token is refused as such.
    cli.ok(&[
        "robot",
        "connect",
        "r",
        &robot.url,
        "--jwt",
        &jwt("user:memberof:admins", -3600),
    ]);
    let (code, _, err) = cli.code(&["service", "create", "echo", "late"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("answered 401") && err.contains("expired"),
        "{err}"
    );
    assert!(err.contains("refused the JWT sent"), "{err}");
    // A god token on a robot started without --god: the hint is about the
    // god token, not about a JWT.
    cli.ok(&[
        "robot",
        "connect",
        "r",
        &robot.url,
        "--god-token",
        "not-the-god-token",
    ]);
    let (code, _, err) = cli.code(&["webhook", "list"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("answered 401")
            && err.contains("refused the god token")
            && err.contains("started with `--god`")
            && err.contains("zrobot godtoken get --data-dir DIR")
            && !err.contains("--jwt"),
        "{err}"
    );
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The robot addresses the demo printed, to check they are gone after it.
fn demo_urls(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("robot "))
        .filter_map(|l| l.split_once(": http://").map(|(_, a)| a.to_owned()))
        .collect()
}

/// The first column of the table printed under the line `title`: the names
/// of the services (or the actions of the tasks) it lists.
fn table_column(out: &str, title: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| *l != title)
        // The title, the column titles, the rule under them.
        .skip(3)
        .take_while(|l| l.starts_with(' ') && !l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The address the demo says vm `name` of robot 1 got from node1 of robot 2.
fn vm_ip<'a>(out: &'a str, name: &str) -> &'a str {
    let prefix = format!("  {name}: ");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for vm {name}: {out}"));
    let rest = &line[prefix.len()..];
    let (ip, from) = rest.split_once(' ').unwrap();
    assert_eq!(from, "from node1 on robot 2 (`edge`)", "{line}");
    ip
}

#[test]
fn the_demo_runs_to_completion_and_stops_its_robots() {
    let cli = Cli::new();
    let (code, out, err) = cli.code(&[
        "demo",
        "--once",
        "--examples",
        examples_dir().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("5 task(s): 5 ok, 0 failed"), "{out}");
    assert!(!out.contains("being wired"), "{out}");

    // The vms and the planner are services of robot 1, the node one of robot 2.
    assert_eq!(
        table_column(&out, "Services on robot 1:"),
        ["capacity", "db", "web"],
        "{out}"
    );
    assert_eq!(
        table_column(
            &out,
            "Services on robot 2 (`edge`), as robot 2 reports them:"
        ),
        ["node1"],
        "{out}"
    );
    // Each vm got its address from the node of robot 2, and that node's data,
    // as robot 2 shows it, lists both vms at those addresses.
    let (web, db) = (vm_ip(&out, "web"), vm_ip(&out, "db"));
    let ips = std::collections::BTreeSet::from([web, db]);
    assert_eq!(
        ips,
        std::collections::BTreeSet::from(["10.0.0.2", "10.0.0.3"]),
        "{out}"
    );
    let node = out
        .lines()
        .find(|l| l.starts_with("  node1 on robot 2 hosts "))
        .unwrap_or_else(|| panic!("no line for node1: {out}"));
    assert!(
        node.contains("hosts 2 vm(s): ")
            && node.contains(&format!("db at {db} (8192 MiB, 4 cpu)"))
            && node.contains(&format!("web at {web} (2048 MiB, 2 cpu)")),
        "{node}"
    );
    assert!(
        out.contains("✓ every vm of robot 1 is in the data of its node on robot 2"),
        "{out}"
    );
    // Robot 2 ran create_vm for the installs of robot 1, and info for its
    // planner: for the report asked at the end, and for the blueprint's own
    // if node1 existed by then.
    let asked = "Tasks node1 of robot 2 ran (its recurring monitor left out), and the task of robot 1 that asked for each:";
    let actions = table_column(&out, asked);
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!(count("create_vm"), 2, "{out}");
    assert!((1..=2).contains(&count("info")), "{out}");
    assert_eq!(actions.len(), count("create_vm") + count("info"), "{out}");
    for caller in ["web.install", "db.install", "capacity.report"] {
        assert!(out.contains(&format!("{caller} on robot 1")), "{out}");
    }
    // The planner of robot 1 counts the node of robot 2.
    assert!(
        out.contains(": 1 node(s), 2 vm(s); memory 10240 MiB used"),
        "{out}"
    );

    let urls = demo_urls(&out);
    assert_eq!(urls.len(), 2, "{out}");
    for addr in urls {
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "robot at {addr} still runs"
        );
    }
    // The demo touches no config of the user.
    assert!(!cli.config_dir().exists());
}

#[test]
fn the_demo_exits_1_when_a_task_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = tmp.path().join("examples");
    copy(&examples_dir(), &examples);
    // web never boots: its `start` fails after its retries.
    let boot = tmp.path().join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    let bp = examples.join("blueprints/demo.yaml");
    let text = std::fs::read_to_string(&bp).unwrap().replace(
        "  - vm__web:\n",
        &format!(
            "  - vm__web:\n      boot_dir: {}\n      boot_after: 1000\n",
            boot.display()
        ),
    );
    assert!(
        text.contains("boot_after: 1000"),
        "the demo blueprint changed: {text}"
    );
    std::fs::write(&bp, text).unwrap();
    let cli = Cli::new();
    let (code, out, err) = cli.code(&[
        "demo",
        "--no-wait-for-ctrl-c",
        "--examples",
        examples.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("5 task(s): 4 ok, 1 failed"), "{out}");
    assert!(out.contains("web is not answering yet"), "{out}");
    // Its install went well: robot 2 placed it all the same.
    assert!(
        out.contains("✓ every vm of robot 1 is in the data of its node on robot 2"),
        "{out}"
    );
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn events_are_printed_and_followed_live() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = echo_repo(tmp.path());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let cli = Cli::new();
    cli.ok(&["robot", "connect", "local", &robot.url]);
    cli.ok(&["service", "create", "echo", "s1"]);
    cli.ok(&["task", "schedule", "s1", "hello", "-a", "x=1", "--wait"]);

    // What the robot kept, as JSON lines.
    let out = cli.ok(&["--json", "events", "--service", "s1"]);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "service.created",
            "log",
            "task.scheduled",
            "task.started",
            "log",
            "state.changed",
            "task.finished"
        ]
    );
    let last = events.last().unwrap()["id"].as_u64().unwrap();
    // As text, filtered to finished tasks.
    let text = cli.ok(&["events", "--kind", "task.finished"]);
    assert!(
        text.contains("task.finished") && text.contains("s1") && text.contains("hello"),
        "{text}"
    );
    // Nothing after the last one.
    let (code, out, err) = cli.code(&["events", "--after", &last.to_string()]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("--follow"), "{err}");
    // A bad kind is the robot's clear error.
    let (code, _, err) = cli.code(&["events", "--kind", "tasks"]);
    assert_ne!(code, 0);
    assert!(err.contains("not a kind of event"), "{err}");

    // --follow prints a new task as it happens.
    let mut follow = cli
        .command(&[
            "events",
            "--follow",
            "--service",
            "s1",
            "--after",
            &last.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    cli.ok(&["task", "schedule", "s1", "fail"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("task.finished")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no task.finished from --follow within 20 s: {seen:?}"),
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let finished = seen.iter().find(|l| l.contains("task.finished")).unwrap();
    assert!(
        finished.contains("error") && finished.contains("boom"),
        "{finished}"
    );
    assert!(seen[0].contains("task.scheduled"), "{seen:?}");
}

/// `task get` and `task cancel` take the start of a guid, as `task list`
/// shows it, or `last`; a prefix that names no task says how to find one.
#[test]
fn tasks_are_named_by_the_start_of_their_guid_or_last() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = echo_repo(tmp.path());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let cli = Cli::new();
    cli.ok(&["robot", "connect", "local", &robot.url]);
    cli.ok(&["service", "create", "echo", "e1"]);
    let first = cli.json(&["task", "schedule", "e1", "hello", "-a", "x=1", "--wait"]);
    let guid = first["guid"].as_str().unwrap().to_owned();
    let got = cli.json(&["task", "get", "e1", &guid[..8]]);
    assert_eq!(got["guid"], first["guid"], "{got}");
    let last = cli.json(&["task", "get", "e1", "last"]);
    assert_eq!(last["guid"], first["guid"], "{last}");
    let (code, _, err) = cli.code(&["task", "get", "e1", "ffffffffff"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no task of `e1` starts with `ffffffffff`"),
        "{err}"
    );
    let (code, _, err) = cli.code(&["task", "get", "e1", "not-a-guid!"]);
    assert_ne!(code, 0);
    assert!(err.contains("is not a task"), "{err}");

    // --raw: the result alone; a failed task exits 1 with its error.
    let raw = cli.ok(&["task", "get", "e1", "last", "--raw"]);
    let result: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(result["x"], 1, "{raw}");
    cli.code(&["task", "schedule", "e1", "fail", "--wait"]);
    let (code, out, err) = cli.code(&["task", "get", "e1", "last", "--raw"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("boom: this action fails on purpose"), "{err}");
}

/// The robot's log has no terminal colour codes when it is not written to
/// a terminal (a file, a pipe, journald).
#[test]
fn the_log_has_no_colour_codes_off_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(tmp.path().join("robot.log")).unwrap();
    let mut child = Command::new(zrobot_bin())
        .args([
            "server",
            "start",
            "-L",
            "127.0.0.1:0",
            "--god",
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        // Unreachable: the robot logs an error about it.
        .args(["-T", "https://127.0.0.1:1/acme/templates.git"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("zrobot listening on"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(tmp.path().join("robot.log")).unwrap();
    assert!(text.contains("ERROR"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

/// A second robot on a data directory in use stops at once, naming the
/// process that holds it, before it reads anything of it.
#[test]
fn a_second_robot_on_the_same_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let first = RobotProcess::start(&data, &["--god"]);
    let out = Command::new(zrobot_bin())
        .args([
            "server",
            "start",
            "-L",
            "127.0.0.1:0",
            "--god",
            "--data-dir",
        ])
        .arg(&data)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is in use by another robot"), "{err}");
    assert!(err.contains(&format!("pid {}", first.child.id())), "{err}");
    assert!(out.stdout.is_empty(), "it never listened");
}

/// `service clear-state` removes a tag or a category from a service's state
/// table, stored at once (a restart does not bring it back); one not set is
/// a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_entry_is_cleared_from_the_cli_and_stays_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = echo_repo(tmp.path());
    let mut robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let cli = Cli::new();
    cli.ok(&["robot", "connect", "local", &robot.url]);
    cli.ok(&["service", "create", "echo", "e1"]);
    cli.ok(&["task", "schedule", "e1", "hello", "-a", "x=1", "--wait"]);
    let state = |cli: &Cli| cli.json(&["service", "get", "e1"])["state"].clone();
    assert_eq!(state(&cli)[0]["category"], "hello", "{}", state(&cli));
    let out = cli.ok(&["service", "clear-state", "e1", "hello", "said"]);
    assert!(out.contains("state `hello/said` of `e1` cleared"), "{out}");
    assert_eq!(state(&cli), json!([]));
    let (code, _, err) = cli.code(&["service", "clear-state", "e1", "hello", "said"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has no state `hello/said`"), "{err}");

    robot.restart();
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            cli.code(&["service", "get", "e1"]).0 == 0
        })
        .await
    );
    assert_eq!(state(&cli), json!([]), "the clearing was stored");
}

/// `template new` writes a template that `template check` accepts, whose
/// tests pass, and that works in a robot: a consumer made with `--consumer-of` gets its
/// producer's result. An existing one is left as it is.
#[test]
fn a_new_template_checks_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let cli = Cli::new();
    let dir = src.to_str().unwrap();
    let out = cli.ok(&["template", "new", "dns", "--dir", dir]);
    assert!(out.contains("templates/dns"), "{out}");
    cli.ok(&[
        "template",
        "new",
        "site",
        "--dir",
        dir,
        "--consumer-of",
        "dns",
    ]);
    let checked = cli.ok(&["template", "check", dir]);
    assert!(checked.contains("2 template(s) loaded"), "{checked}");
    // They come with tests, which pass: the consumer's against a stubbed
    // producer on another robot.
    let tested = cli.ok(&["template", "test", dir]);
    assert!(
        tested.contains("test result: ok. 7 passed; 0 failed"),
        "{tested}"
    );
    assert!(
        tested.contains("test site/site: use asks the dns and gives back its answer ... ok"),
        "{tested}"
    );
    let before = std::fs::read_to_string(src.join("templates/dns/dns.lua")).unwrap();
    let (code, _, err) = cli.code(&["template", "new", "dns", "--dir", dir]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(
        std::fs::read_to_string(src.join("templates/dns/dns.lua")).unwrap(),
        before
    );
    let (code, _, err) = cli.code(&["template", "new", "Not Valid", "--dir", dir]);
    assert_eq!(code, 2, "{err}");

    // In a robot, from git.
    let files: Vec<(String, String)> = [
        "dns/template.yaml",
        "dns/dns.lua",
        "site/template.yaml",
        "site/site.lua",
    ]
    .iter()
    .map(|f| {
        let path = format!("templates/{f}");
        let text = std::fs::read_to_string(src.join(&path)).unwrap();
        (path, text)
    })
    .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo = template_repo(&tmp.path().join("repo"), &refs);
    let url = format!("file://{}", repo.display());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &url]);
    cli.ok(&["robot", "connect", "local", &robot.url]);
    cli.ok(&["service", "create", "site", "web"]);
    let task = cli.json(&[
        "task",
        "schedule",
        "web",
        "use",
        "-a",
        "action=hello",
        "--wait",
    ]);
    assert_eq!(task["state"], "ok", "{task}");
    let result: Value = serde_json::from_str(task["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["said"], "hello world", "{task}");
}
