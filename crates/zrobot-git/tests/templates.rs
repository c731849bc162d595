//! Template repository clones: by path and file://, `#ref` picking the
//! revision, updates bringing newer template versions, and failures that
//! name their cause and leave nothing behind.

mod common;

use std::time::Duration;

use common::{entries, load, robot, version_on_disk, SourceRepo};
use serde_json::{json, Value};
use zrobot_core::robot::NewService;
use zrobot_core::RepoId;
use zrobot_git::{GitError, TemplateRepoUrl, TemplateRepos};

fn url(s: &str) -> TemplateRepoUrl {
    TemplateRepoUrl::parse(s).unwrap()
}

#[test]
fn clone_by_path_then_by_file_url() {
    let src = SourceRepo::new("tpl");
    src.template("node", "1.0.0");
    let c1 = src.commit("node 1.0.0");
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());

    let by_path = repos.clone_or_update(&url(&src.path_str())).unwrap();
    assert_eq!(by_path.commit, c1.to_string());
    assert_eq!(by_path.repo_id, RepoId::local(src.path()));
    assert_eq!(by_path.repo_id.to_string(), "local/acme/tpl");
    assert_eq!(
        by_path.path,
        data.path()
            .join("templates")
            .join("local")
            .join("acme")
            .join("tpl")
    );
    assert_eq!(version_on_disk(&by_path, "node"), "1.0.0");
    assert!(by_path.changed);
    assert_eq!(by_path.reference, None);

    // The same repository by file:// is the same id, hence the same clone.
    let file_url = url(&format!("file://{}", src.path_str()));
    assert_eq!(file_url.repo_id(), by_path.repo_id);
    let by_file = repos.clone_or_update(&file_url).unwrap();
    assert_eq!(by_file.path, by_path.path);
    assert_eq!(by_file.commit, c1.to_string());
    assert!(!by_file.changed);

    // No temp folder stays next to the clone.
    let account_dir = by_path.path.parent().unwrap();
    assert_eq!(
        entries(account_dir)
            .iter()
            .filter(|e| !e.contains('/'))
            .count(),
        1,
        "{:?}",
        entries(account_dir)
    );
    assert_eq!(repos.current(&file_url).unwrap().commit, c1.to_string());
}

#[test]
fn a_fresh_clone_by_file_url() {
    let src = SourceRepo::new("by-file");
    src.template("vm", "0.1.0");
    let c = src.commit("vm");
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());
    let checkout = repos
        .clone_or_update(&url(&format!("file://{}#main", src.path_str())))
        .unwrap();
    assert_eq!(checkout.commit, c.to_string());
    assert_eq!(checkout.repo_id.to_string(), "local/acme/by-file");
    assert_eq!(checkout.reference.as_deref(), Some("main"));
    assert_eq!(version_on_disk(&checkout, "vm"), "0.1.0");
}

/// v1.0.0 (annotated tag) -> main (2.0.0, lightweight tag `light`) ; dev (3.0.0).
fn three_revisions() -> (SourceRepo, [git2::Oid; 3]) {
    let src = SourceRepo::new("revs");
    src.template("node", "1.0.0");
    let c1 = src.commit("1.0.0");
    src.tag("v1.0.0");
    src.template("node", "2.0.0");
    let c2 = src.commit("2.0.0");
    src.light_tag("light");
    src.branch("dev");
    src.template("node", "3.0.0");
    let c3 = src.commit("3.0.0");
    src.switch("main");
    (src, [c1, c2, c3])
}

#[test]
fn the_reference_picks_the_revision() {
    let (src, [c1, c2, c3]) = three_revisions();
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());
    let base = url(&src.path_str());

    let default = repos.clone_or_update(&base).unwrap();
    assert_eq!(
        (
            default.commit.as_str(),
            version_on_disk(&default, "node").as_str()
        ),
        (c2.to_string().as_str(), "2.0.0")
    );

    let short_c2 = c2.to_string()[..8].to_owned();
    for (reference, commit, version) in [
        ("v1.0.0", c1, "1.0.0"),
        ("dev", c3, "3.0.0"),
        ("light", c2, "2.0.0"),
        (c1.to_string().as_str(), c1, "1.0.0"),
        (short_c2.as_str(), c2, "2.0.0"),
        ("refs/tags/v1.0.0", c1, "1.0.0"),
        ("main", c2, "2.0.0"),
    ] {
        let checkout = repos.checkout(&base, reference).unwrap();
        assert_eq!(checkout.commit, commit.to_string(), "{reference}");
        assert_eq!(version_on_disk(&checkout, "node"), version, "{reference}");
        assert_eq!(checkout.reference.as_deref(), Some(reference));
    }

    // A fresh clone honours `#ref` too.
    let other = tempfile::tempdir().unwrap();
    let checkout = TemplateRepos::new(other.path())
        .clone_or_update(&url(&format!("{}#dev", src.path_str())))
        .unwrap();
    assert_eq!(checkout.commit, c3.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_a_newer_tag_brings_a_newer_template_version() {
    let src = SourceRepo::new("upgrades");
    src.template("node", "1.0.0");
    src.commit("1.0.0");
    src.tag("v1.0.0");
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());
    let robot = robot();

    let first = repos
        .clone_or_update_async(url(&format!("{}#v1.0.0", src.path_str())))
        .await
        .unwrap();
    load(&robot, &first);
    assert_eq!(
        robot
            .templates()
            .resolve("node")
            .unwrap()
            .uid
            .version
            .to_string(),
        "1.0.0"
    );
    let svc = robot
        .create_service(NewService {
            template: "node".into(),
            name: "n1".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // The source moves on after the clone: only a fetch can see v1.1.0.
    src.template("node", "1.1.0");
    let c2 = src.commit("1.1.0");
    src.tag("v1.1.0");
    let second = repos
        .checkout_async(url(&src.path_str()), "v1.1.0".into())
        .await
        .unwrap();
    assert!(second.changed);
    assert_eq!(second.commit, c2.to_string());
    assert_eq!(second.path, first.path);
    load(&robot, &second);
    let newest = robot.templates().resolve("node").unwrap();
    assert_eq!(newest.uid.to_string(), "local/acme/upgrades/node/1.1.0");
    assert_eq!(
        robot
            .templates()
            .resolve("node/1.0.0")
            .unwrap()
            .uid
            .version
            .to_string(),
        "1.0.0"
    );
    // The service stays on the version it was made with until the robot moves it.
    assert_eq!(svc.template_uid(), "local/acme/upgrades/node/1.0.0");
    let moved = robot.upgrade_services().await;
    assert!(moved.failed.is_empty(), "{:?}", moved.failed);
    assert_eq!(svc.template_uid(), "local/acme/upgrades/node/1.1.0");
    let task = robot.schedule(&svc, "version", Value::Null).await.unwrap();
    let record = tokio::time::timeout(Duration::from_secs(30), task.done())
        .await
        .expect("the action ends");
    assert_eq!(record.result, Some(json!("1.1.0")), "{record:?}");

    // Following the default branch: an update brings its new commit.
    src.template("node", "1.2.0");
    let c3 = src.commit("1.2.0");
    let third = repos
        .clone_or_update_async(url(&src.path_str()))
        .await
        .unwrap();
    assert_eq!(third.commit, c3.to_string());
    load(&robot, &third);
    assert_eq!(
        robot
            .templates()
            .resolve("node")
            .unwrap()
            .uid
            .version
            .to_string(),
        "1.2.0"
    );
}

#[test]
fn a_local_checkout_of_a_remote_repository_takes_the_remote_id() {
    let src = SourceRepo::new("checkout");
    src.template("node", "1.0.0");
    src.commit("c");
    src.repo
        .remote("origin", "git@github.com:Acme/Templates.git")
        .unwrap();
    let u = url(&src.path_str());
    assert_eq!(u.repo_id(), RepoId::new("github.com", "Acme", "Templates"));
    let data = tempfile::tempdir().unwrap();
    let checkout = TemplateRepos::new(data.path()).clone_or_update(&u).unwrap();
    assert_eq!(checkout.repo_id.to_string(), "github.com/Acme/Templates");
    assert!(checkout
        .path
        .ends_with("templates/github.com/Acme/Templates"));
}

/// Asserts that nothing at all was left under the data directory.
fn assert_nothing_left(data: &std::path::Path) {
    assert_eq!(entries(data), Vec::<String>::new(), "left behind");
}

#[test]
fn bad_urls_are_refused_with_the_reason() {
    for (s, want) in [
        ("ftp://example.com/a/b", "scheme `ftp` is not supported"),
        ("https://github.com/acme", "must be account/repo"),
        ("git@github.com:a/b/c", "nested groups"),
        ("https://github.com/acme/t#", "nothing follows `#`"),
    ] {
        let e = TemplateRepoUrl::parse(s).unwrap_err();
        assert!(matches!(e, GitError::BadUrl { .. }), "{s}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(want) && msg.contains(s.trim_end_matches('#')),
            "{s}: {msg}"
        );
    }
}

#[test]
fn a_missing_repository_fails_clearly_and_leaves_nothing() {
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());
    let gone = data.path().join("nowhere").join("repo");
    for u in [
        gone.display().to_string(),
        format!("file://{}", gone.display()),
    ] {
        let e = repos.clone_or_update(&url(&u)).unwrap_err();
        assert!(matches!(e, GitError::Clone { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(&gone.display().to_string()) && msg.contains("does not exist"),
            "{msg}"
        );
    }
    // A folder that is not a repository.
    let plain = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(plain.path().join("templates")).unwrap();
    let e = repos
        .clone_or_update(&url(&plain.path().display().to_string()))
        .unwrap_err();
    assert!(e.to_string().contains("is not a git repository"), "{e}");
    assert_nothing_left(data.path());
}

#[test]
fn an_unreachable_host_fails_clearly_and_leaves_nothing() {
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());
    // Port 1 of loopback refuses at once: nothing leaves the machine. Each
    // transport built in must get as far as connecting (an "unsupported URL"
    // would mean the transport is missing).
    let mut urls = vec!["http://127.0.0.1:1/acme/templates"];
    if cfg!(feature = "https") {
        urls.push("https://127.0.0.1:1/acme/templates");
    }
    if cfg!(feature = "ssh") {
        urls.push("ssh://git@127.0.0.1:1/acme/templates");
    }
    for u in urls {
        let e = repos.clone_or_update(&url(u)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, GitError::Clone { .. }), "{e:?}");
        assert!(msg.starts_with(&format!("cannot clone {u}:")), "{msg}");
        assert!(msg.contains("can be reached"), "{msg}");
        assert!(!msg.contains("built without"), "{msg}");
        assert_nothing_left(data.path());
    }
}

#[test]
fn a_missing_ref_fails_clearly_and_leaves_nothing() {
    let (src, _) = three_revisions();
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());
    let e = repos
        .clone_or_update(&url(&format!("{}#v9.9.9", src.path_str())))
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, GitError::NoSuchRef { .. }), "{e:?}");
    assert!(
        msg.contains("v9.9.9") && msg.contains(&src.path_str()),
        "{msg}"
    );
    assert!(
        msg.contains("branch dev") && msg.contains("tag v1.0.0"),
        "{msg}"
    );
    assert_nothing_left(data.path());

    // On an existing clone, a missing ref leaves it where it was.
    let good = repos.clone_or_update(&url(&src.path_str())).unwrap();
    let e = repos
        .checkout(&url(&src.path_str()), "deadbeef")
        .unwrap_err();
    assert!(matches!(e, GitError::NoSuchRef { .. }), "{e:?}");
    let now = repos.current(&url(&src.path_str())).unwrap();
    assert_eq!(now.commit, good.commit);
    assert_eq!(version_on_disk(&now, "node"), "2.0.0");
}

#[test]
fn a_repository_without_templates_is_refused() {
    let src = SourceRepo::new("no-templates");
    src.write("README.md", "nothing here\n");
    let c1 = src.commit("readme");
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());
    let e = repos.clone_or_update(&url(&src.path_str())).unwrap_err();
    assert!(matches!(e, GitError::NoTemplates { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("templates/") && msg.contains(&c1.to_string()),
        "{msg}"
    );
    assert_nothing_left(data.path());

    // An empty repository has no default branch to load.
    let empty = SourceRepo::new("empty");
    let e = repos.clone_or_update(&url(&empty.path_str())).unwrap_err();
    assert!(matches!(e, GitError::NoDefaultBranch { .. }), "{e:?}");
    assert_nothing_left(data.path());
}
