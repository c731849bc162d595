//! Secret data fields (`x-secret: true`, `format: password`) sealed at rest:
//! real robot processes, their real database files and data repository read
//! byte by byte, and a robot with another key.

mod util;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use util::*;
use zrobot_client::wire::{ServiceCreate, TaskState};

const VAULT_YAML: &str = r#"
version: 1.0.0
data:
  type: object
  properties:
    name: {type: string}
    password: {type: string, format: password}
    cloud:
      type: object
      default: {}
      properties:
        token: {type: string, x-secret: true}
        region: {type: string, default: eu}
"#;
const VAULT_LUA: &str = r#"
local v = {}
-- A new secret made by the action (arguments are kept in the task
-- history as given: secrets belong in data, not in arguments).
function v.rotate(self) self.data.password = string.reverse("TXETNIALP-dnoces") end
-- Tells what it reads, reversed: a task's result is kept in clear too.
function v.peek(self)
  local function rev(s) if s then return string.reverse(s) end end
  return {password = rev(self.data.password), token = rev(self.data.cloud.token), region = self.data.cloud.region}
end
return v
"#;

/// Whether any file under `dir` (the database, its WAL, a clone) holds `needle`.
fn found_in(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        if path.is_dir() {
            hits.extend(found_in(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

async fn peek(robot: &RobotProcess, svc: uuid::Uuid) -> serde_json::Value {
    let c = robot.god_client();
    let t = c.schedule(svc, "peek", json!({})).await.unwrap();
    let done = c
        .wait_done(svc, t.guid, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::Ok, "{:?}", done.eco);
    done.result_value().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_fields_are_sealed_at_rest_and_open_only_with_their_key() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("acme/vaults"),
        &[
            ("templates/vault/template.yaml", VAULT_YAML),
            ("templates/vault/vault.lua", VAULT_LUA),
        ],
    );
    let bare = tmp.path().join("data.git");
    git2::Repository::init_bare(&bare).unwrap();
    let key = tmp.path().join("data.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let args = |key: &Path| {
        vec![
            "--god".to_owned(),
            "-T".to_owned(),
            format!("file://{}", repo.display()),
            "--data-repo".to_owned(),
            format!("file://{}", bare.display()),
            "--secret-key-file".to_owned(),
            key.display().to_string(),
        ]
    };
    let own = args(&key);
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let data = tmp.path().join("a");
    let mut robot = RobotProcess::start(&data, &own);
    let client = robot.god_client();
    let created = client
        .create_service(&ServiceCreate {
            template: "vault".into(),
            name: "v1".into(),
            data: json!({"name": "plainly-visible", "password": "first-PLAINTEXT", "cloud": {"token": "token-PLAINTEXT"}}),
            public: false,
        })
        .await
        .unwrap();
    let svc = created.service.guid;
    let t = client.schedule(svc, "rotate", json!({})).await.unwrap();
    client
        .wait_done(svc, t.guid, Duration::from_secs(30))
        .await
        .unwrap();
    // Actions read them as written; the god token sees them.
    let seen = peek(&robot, svc).await;
    assert_eq!(
        seen,
        json!({"password": "TXETNIALP-dnoces", "token": "TXETNIALP-nekot", "region": "eu"})
    );
    assert_eq!(
        client.service(svc).await.unwrap().data.unwrap()["password"],
        "second-PLAINTEXT"
    );
    robot.terminate();

    // Nothing secret in clear in the database, its WAL, or the data
    // repository; what is not secret is there.
    assert!(
        found_in(&data, "PLAINTEXT").is_empty(),
        "{:?}",
        found_in(&data, "PLAINTEXT")
    );
    assert!(
        !found_in(&data, "plainly-visible").is_empty(),
        "the test reads the right files"
    );
    let check = tmp.path().join("check");
    git2::build::RepoBuilder::new()
        .branch("main")
        .clone(&format!("file://{}", bare.display()), &check)
        .unwrap();
    assert!(found_in(&check, "PLAINTEXT").is_empty());
    assert!(!found_in(&check, "$sealed").is_empty());

    // The same key opens them again after a restart...
    robot.restart();
    assert_eq!(peek(&robot, svc).await["password"], "TXETNIALP-dnoces");
    robot.terminate();
    // ...and on a new host restored from the data repository.
    let restored = RobotProcess::start(&tmp.path().join("b"), &own);
    assert_eq!(peek(&restored, svc).await["token"], "TXETNIALP-nekot");
    drop(restored);

    // Another key: the fields come back absent, and the logs say so.
    let other = tmp.path().join("other.key");
    std::fs::write(&other, "cd".repeat(32)).unwrap();
    let wrong = args(&other);
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let log = tmp.path().join("c.log");
    let stranger = RobotProcess::start_logged(&tmp.path().join("c"), &wrong, &log);
    let seen = peek(&stranger, svc).await;
    assert_eq!(seen, json!({"region": "eu"}), "{seen}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(
            "service v1: secret field(s) cloud.token, password were sealed with another data key"
        ),
        "{text}"
    );
    let logs = stranger.god_client().logs(svc).await.unwrap().logs;
    assert!(
        logs.contains("could not be opened with this robot's data key"),
        "{logs}"
    );

    // A bad key file is refused at start, naming it.
    std::fs::write(&other, "not a key").unwrap();
    let out = std::process::Command::new(zrobot_bin())
        .args(["server", "start", "-L", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("d"))
        .args(["--secret-key-file", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("other.key") && err.contains("64 hexadecimal digits"),
        "{err}"
    );
}

/// Without --secret-key-file, a key is made in the data directory at the
/// first start (mode 0600), said so, and used from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_is_made_at_the_first_start() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("log");
    let mut robot = RobotProcess::start_logged(&data, &["--god"], &log);
    let key = data.join("data.key");
    let made = std::fs::read_to_string(&key).unwrap();
    assert_eq!(made.trim().len(), 64);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("sealed with a key made now"));
    robot.restart();
    assert_eq!(std::fs::read_to_string(&key).unwrap(), made);
}
