//! The data repository: services exported as YAML, committed and pushed to
//! a bare repository, checked from a fresh clone of it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{bare_repo, entries, robot, SourceRepo};
use git2::Repository;
use serde_json::{json, Value};
use zrobot_core::robot::NewService;
use zrobot_core::{RepoId, Robot, TagState};
use zrobot_git::{DataRepo, GitError};

const SECRET_HASH: &str = "hash-of-a-secret-that-must-never-leak";

/// A robot with github.com/acme/templates/node/1.2.0 loaded.
fn robot_with_node() -> (Robot, SourceRepo) {
    let src = SourceRepo::new("templates");
    src.write(
        "templates/node/template.yaml",
        "version: 1.2.0\ndata:\n  type: object\n  properties:\n    hostname: {type: string}\n    port: {type: integer, default: 22}\n",
    );
    src.write(
        "templates/node/node.lua",
        "local node = {}\nfunction node.ping(self) return 'pong' end\nreturn node\n",
    );
    let robot = robot();
    let load = robot.load_repository(src.path(), &RepoId::new("github.com", "acme", "templates"));
    assert!(load.errors.is_empty(), "{:?}", load.errors);
    (robot, src)
}

async fn create(robot: &Robot, name: &str, data: Value, public: bool) -> uuid::Uuid {
    let svc = robot
        .create_service(NewService {
            template: "node".into(),
            name: name.into(),
            data,
            public,
            secrets: vec![SECRET_HASH.into()],
        })
        .await
        .unwrap();
    svc.guid
}

/// A fresh clone of the bare remote, made the way any reader would, on `branch`.
fn clone_remote(remote: &Path, branch: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::clone(&remote.display().to_string(), dir.path().join("c")).unwrap();
    let tip = repo
        .refname_to_id(&format!("refs/remotes/origin/{branch}"))
        .unwrap();
    repo.set_head_detached(tip).unwrap();
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
    dir
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap()
}

fn commit_count(remote: &Path, branch: &str) -> usize {
    let repo = Repository::open_bare(remote).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref(&format!("refs/heads/{branch}")).unwrap();
    walk.count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_push_and_read_back() {
    let (robot, _src) = robot_with_node();
    let g1 = create(&robot, "node1", json!({"hostname": "10.0.0.1"}), true).await;
    let g2 = create(
        &robot,
        "node2",
        json!({"hostname": "10.0.0.2", "port": 2222}),
        false,
    )
    .await;
    robot
        .service(g1)
        .unwrap()
        .state_set("actions", "install", TagState::Ok);

    let (_remote_tmp, remote) = bare_repo();
    let data_dir = tempfile::tempdir().unwrap();
    let remote_str = remote.display().to_string();
    let data_repo = {
        let data_path = data_dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || DataRepo::open(&remote_str, &data_path))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(data_repo.branch(), "main");
    assert_eq!(data_repo.last_pushed(), None);

    let report = data_repo.export_async(robot.clone()).await.unwrap();
    assert_eq!(report.services, 2);
    assert!(report.commit.is_some());
    assert!(report.pushed());
    assert_eq!(data_repo.last_pushed(), report.pushed_at);
    assert_eq!(
        *data_repo.last_pushed_handle().lock().unwrap(),
        report.pushed_at
    );

    let reader = clone_remote(&remote, "main");
    let root = reader.path().join("c");
    let dir1 = root
        .join("github.com/acme/templates/node/node1")
        .join(g1.to_string());
    assert_eq!(
        yaml(&dir1.join("service.yaml")),
        json!({
            "guid": g1.to_string(),
            "name": "node1",
            "template": "github.com/acme/templates/node/1.2.0",
            "version": "1.2.0",
            "public": true,
        })
    );
    assert_eq!(
        yaml(&dir1.join("data.yaml")),
        json!({"hostname": "10.0.0.1", "port": 22})
    );
    assert_eq!(
        yaml(&dir1.join("state.yaml")),
        json!({"actions": {"install": "ok"}})
    );
    let dir2 = root
        .join("github.com/acme/templates/node/node2")
        .join(g2.to_string());
    assert_eq!(
        yaml(&dir2.join("data.yaml")),
        json!({"hostname": "10.0.0.2", "port": 2222})
    );
    assert_eq!(yaml(&dir2.join("service.yaml"))["public"], json!(false));
    assert_eq!(yaml(&dir2.join("state.yaml")), json!({}));

    // No secret, not even its hash, anywhere in what was pushed.
    let remote_repo = Repository::open_bare(&remote).unwrap();
    let head = remote_repo
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    assert_eq!(head.author().name().unwrap(), "zrobot");
    head.tree()
        .unwrap()
        .walk(git2::TreeWalkMode::PreOrder, |_, entry| {
            if let Ok(blob) = entry.to_object(&remote_repo).and_then(|o| o.peel_to_blob()) {
                let text = String::from_utf8_lossy(blob.content());
                assert!(
                    !text.contains(SECRET_HASH),
                    "a secret leaked into {}",
                    entry.name().unwrap()
                );
                assert!(!text.contains("secret"), "{}", entry.name().unwrap());
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();

    // Nothing changed: no commit, nothing pushed.
    let before = commit_count(&remote, "main");
    let again = data_repo.export_async(robot.clone()).await.unwrap();
    assert_eq!((again.commit.clone(), again.pushed()), (None, false));
    assert_eq!(commit_count(&remote, "main"), before);

    // A deleted service's folder goes; a file that is not a service folder stays.
    robot.delete_service(g2).await.unwrap();
    std::fs::write(data_repo.dir().join("README.md"), "services of robot 1\n").unwrap();
    let third = data_repo.export_async(robot.clone()).await.unwrap();
    assert!(third.commit.is_some() && third.pushed());
    assert_eq!(commit_count(&remote, "main"), before + 1);
    let reader = clone_remote(&remote, "main");
    let root = reader.path().join("c");
    assert!(!root.join("github.com/acme/templates/node/node2").exists());
    assert!(root.join("README.md").is_file());
    assert_eq!(
        entries(&root.join("github.com")),
        vec![
            "acme".to_owned(),
            "acme/templates".into(),
            "acme/templates/node".into(),
            "acme/templates/node/node1".into(),
            format!("acme/templates/node/node1/{g1}"),
            format!("acme/templates/node/node1/{g1}/data.yaml"),
            format!("acme/templates/node/node1/{g1}/service.yaml"),
            format!("acme/templates/node/node1/{g1}/state.yaml"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_and_a_remote_that_moved_ahead() {
    let (robot, _src) = robot_with_node();
    create(&robot, "a", json!({"hostname": "a"}), false).await;
    let (_remote_tmp, remote) = bare_repo();
    let data_dir = tempfile::tempdir().unwrap();
    let remote_str = format!("{}#robots/one", remote.display());

    let first = DataRepo::open(&remote_str, data_dir.path()).unwrap();
    assert_eq!(first.branch(), "robots/one");
    assert!(first.export_async(robot.clone()).await.unwrap().pushed());

    // Someone else pushes to the branch (here: a second working clone).
    let other_dir = tempfile::tempdir().unwrap();
    let other = DataRepo::open(&remote_str, other_dir.path()).unwrap();
    std::fs::write(other.dir().join("NOTES.md"), "by hand\n").unwrap();
    let (other_robot, _src2) = robot_with_node();
    create(&other_robot, "a", json!({"hostname": "a"}), false).await;
    create(&other_robot, "b", json!({"hostname": "b"}), false).await;
    assert!(other.export_async(other_robot).await.unwrap().pushed());

    // Reopened on the same data dir: the same working clone, and it knows
    // the remote had its data.
    let reopened = DataRepo::open(&remote_str, data_dir.path()).unwrap();
    assert!(reopened.last_pushed().is_some());
    // Its next snapshot goes on top of the remote's branch, as a fast-forward.
    let report = reopened.export_async(robot.clone()).await.unwrap();
    assert!(report.pushed(), "{report:?}");
    let reader = clone_remote(&remote, "robots/one");
    let root = reader.path().join("c");
    assert!(root.join("NOTES.md").is_file(), "{:?}", entries(&root));
    assert!(root.join("github.com/acme/templates/node/a").is_dir());
    assert!(!root.join("github.com/acme/templates/node/b").exists());
    assert!(reopened.last_error().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_failures_name_the_cause() {
    let data_dir = tempfile::tempdir().unwrap();
    let missing = data_dir.path().join("no-such-remote.git");
    let e = DataRepo::open(&missing.display().to_string(), data_dir.path()).unwrap_err();
    assert!(matches!(e, GitError::Clone { .. }), "{e:?}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let e = DataRepo::open("ftp://example.com/a/b", data_dir.path()).unwrap_err();
    assert!(matches!(e, GitError::BadUrl { .. }), "{e:?}");
    assert_eq!(entries(data_dir.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_push_is_reported_and_retried() {
    let (robot, _src) = robot_with_node();
    create(&robot, "a", json!({"hostname": "a"}), false).await;
    let (remote_tmp, remote) = bare_repo();
    let data_dir = tempfile::tempdir().unwrap();
    let data_repo = DataRepo::open(&remote.display().to_string(), data_dir.path()).unwrap();

    // The remote vanishes: the export commits locally and says why it could not push.
    let moved = remote_tmp.path().join("moved.git");
    std::fs::rename(&remote, &moved).unwrap();
    let e = data_repo.export_async(robot.clone()).await.unwrap_err();
    assert!(matches!(e, GitError::Push { .. }), "{e:?}");
    assert!(data_repo.last_error().is_some());
    assert_eq!(data_repo.last_pushed(), None);

    // Back again: the next export pushes the commit already made.
    std::fs::rename(&moved, &remote).unwrap();
    let report = data_repo.export_async(robot.clone()).await.unwrap();
    assert_eq!(report.commit, None);
    assert!(report.pushed());
    assert!(data_repo.last_error().is_none());
    assert_eq!(commit_count(&remote, "main"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_push_exports_every_interval_until_shutdown() {
    let (robot, _src) = robot_with_node();
    let (_remote_tmp, remote) = bare_repo();
    let data_dir = tempfile::tempdir().unwrap();
    let data_repo = DataRepo::open(&remote.display().to_string(), data_dir.path()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = data_repo.spawn_auto_push(robot.clone(), Duration::from_millis(20), async {
        let _ = stopped.await;
    });

    create(&robot, "a", json!({"hostname": "a"}), false).await;
    // Poll, with a deadline, for the loop to have pushed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while data_repo.last_pushed().is_none() {
        assert!(
            Instant::now() < deadline,
            "auto-push never pushed: {:?}",
            data_repo.last_error()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A service made just before shutdown reaches the remote with the last export.
    let late = create(&robot, "late", json!({"hostname": "late"}), false).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the auto-push task ends after shutdown")
        .unwrap();
    let reader = clone_remote(&remote, "main");
    assert!(reader
        .path()
        .join("c/github.com/acme/templates/node/late")
        .join(late.to_string())
        .join("service.yaml")
        .is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpushed_commit_under_a_remote_that_moved_is_superseded() {
    let (robot, _src) = robot_with_node();
    create(&robot, "a", json!({"hostname": "a"}), false).await;
    let (remote_tmp, remote) = bare_repo();
    let remote_str = remote.display().to_string();
    let data_dir = tempfile::tempdir().unwrap();
    let data_repo = DataRepo::open(&remote_str, data_dir.path()).unwrap();

    // A commit made while the remote is away...
    let moved = remote_tmp.path().join("moved.git");
    std::fs::rename(&remote, &moved).unwrap();
    assert!(data_repo.export_async(robot.clone()).await.is_err());
    std::fs::rename(&moved, &remote).unwrap();
    // ...while another writer pushes a history it does not share.
    let other_dir = tempfile::tempdir().unwrap();
    let other = DataRepo::open(&remote_str, other_dir.path()).unwrap();
    let (other_robot, _src2) = robot_with_node();
    create(&other_robot, "b", json!({"hostname": "b"}), false).await;
    assert!(other.export_async(other_robot).await.unwrap().pushed());

    // The next export is a fast-forward on top of the remote's branch.
    let report = data_repo.export_async(robot.clone()).await.unwrap();
    assert!(report.commit.is_some() && report.pushed(), "{report:?}");
    assert_eq!(commit_count(&remote, "main"), 2);
    let reader = clone_remote(&remote, "main");
    let root = reader.path().join("c/github.com/acme/templates/node");
    assert!(root.join("a").is_dir());
    assert!(!root.join("b").exists());
}
