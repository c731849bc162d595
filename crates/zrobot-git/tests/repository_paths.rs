//! Where clones live: each template repository in a folder of its own,
//! `<host>/<account>/<repo>` with no segment empty, never shared with or
//! replaced by another repository's clone. Real repositories in temp dirs.

mod common;

use common::{version_on_disk, SourceRepo};
use zrobot_git::{GitError, TemplateRepoUrl, TemplateRepos};

fn url(s: &str) -> TemplateRepoUrl {
    TemplateRepoUrl::parse(s).unwrap()
}

/// Attack: a repository URL whose path ends in `.git` with nothing before it
/// (`file:///tmp/x/acme/.git`, `https://host/acme/.git`) gave an empty
/// repository segment, so its clone folder was the account's folder, and
/// cloning it moved aside and deleted every clone of that account. Now each
/// such URL is refused, naming it, and the other clones stay.
#[test]
fn a_path_ending_in_dot_git_cannot_replace_other_clones() {
    let victim = SourceRepo::new("victim");
    victim.template("node", "1.0.0");
    let commit = victim.commit("node 1.0.0");
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());
    let cloned = repos.clone_or_update(&url(&victim.path_str())).unwrap();
    assert_eq!(cloned.repo_id.to_string(), "local/acme/victim");

    // A repository at <tmp>/acme/acme: its `.git` folder has the parent
    // name `acme`, the victim's account.
    let attacker = SourceRepo::new("acme");
    attacker.template("evil", "6.6.6");
    attacker.commit("evil");
    for given in [
        format!("file://{}/.git", attacker.path_str()),
        format!("{}/.git", attacker.path_str()),
        format!("{}/.git/", attacker.path_str()),
        "https://example.com/acme/.git".to_owned(),
        "https://example.com/acme/.git.git".to_owned(),
        "git@example.com:acme/.git".to_owned(),
        "ssh://git@example.com/acme/.git#main".to_owned(),
    ] {
        let e = TemplateRepoUrl::parse(&given).unwrap_err();
        assert!(matches!(e, GitError::BadUrl { .. }), "{given}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(given.split('#').next().unwrap()) && msg.contains("empty"),
            "{given}: {msg}"
        );
    }
    // The repository by its own folder is fine, in a folder of its own.
    let own = repos.clone_or_update(&url(&attacker.path_str())).unwrap();
    assert_eq!(own.repo_id.to_string(), "local/acme/acme");
    assert_ne!(own.path, cloned.path);
    assert!(!cloned.path.starts_with(&own.path) && !own.path.starts_with(&cloned.path));

    let now = repos.current(&url(&victim.path_str())).unwrap();
    assert_eq!(now.commit, commit.to_string());
    assert_eq!(version_on_disk(&cloned, "node"), "1.0.0");
}

/// Attack: two different repositories whose folders have the same name and
/// parent name (`/a/acme/tpl`, `/b/acme/tpl`) have the same id, and the
/// second used to be fetched into the first's clone, replacing its
/// templates. Now the second is refused, naming both, and the first's clone
/// stays as it was; a remote host called `local` (the host of local ids) is
/// refused too. Once the first folder is gone (moved), the clone follows.
#[test]
fn two_repositories_with_the_same_id_never_share_a_clone() {
    let first = SourceRepo::new("tpl");
    first.template("node", "1.0.0");
    let commit = first.commit("node 1.0.0");
    let second = SourceRepo::new("tpl");
    second.template("evil", "6.6.6");
    second.commit("evil");
    let data = tempfile::tempdir().unwrap();
    let repos = TemplateRepos::new(data.path());
    let cloned = repos.clone_or_update(&url(&first.path_str())).unwrap();

    let e = repos.clone_or_update(&url(&second.path_str())).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&second.path_str()) && msg.contains(&first.path_str()),
        "{msg}"
    );
    let now = repos.current(&url(&first.path_str())).unwrap();
    assert_eq!(now.commit, commit.to_string());
    assert_eq!(version_on_disk(&cloned, "node"), "1.0.0");
    assert!(!cloned.path.join("templates/evil").exists());

    let e = TemplateRepoUrl::parse("https://local/acme/tpl").unwrap_err();
    assert!(e.to_string().contains("`local`"), "{e}");

    // The first repository moved away: the second may have the clone.
    let first_path = first.path_str();
    drop(first);
    assert!(!std::path::Path::new(&first_path).exists());
    let taken = repos.clone_or_update(&url(&second.path_str())).unwrap();
    assert_eq!(taken.path, cloned.path);
    assert_eq!(version_on_disk(&taken, "evil"), "6.6.6");
}
