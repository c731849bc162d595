//! A git repository made of a local folder in one commit: what the demo and
//! the benchmark hand a robot as a template repository (robots load only git
//! repositories).

use std::path::Path;

use crate::GitError;

/// Who a [`commit_folder`] commit is by: a name and an email.
pub struct Author<'a> {
    pub name: &'a str,
    pub email: &'a str,
}

/// Makes `dir` a git repository whose one commit, by `author` with
/// `message`, holds every file in it; with `origin`, the repository's
/// `origin` remote is that URL (a robot names a repository's templates after
/// its origin).
pub fn commit_folder(
    dir: &Path,
    author: &Author<'_>,
    message: &str,
    origin: Option<&str>,
) -> Result<(), GitError> {
    let fail = |action: &str| {
        let repo = dir.display().to_string();
        let action = action.to_owned();
        move |e: git2::Error| GitError::Local {
            repo,
            action,
            cause: e.message().to_owned(),
        }
    };
    let repo = git2::Repository::init(dir).map_err(fail("making a repository"))?;
    let mut index = repo.index().map_err(fail("opening the index"))?;
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .map_err(fail("adding the files"))?;
    index.write().map_err(fail("writing the index"))?;
    let tree = index
        .write_tree()
        .and_then(|id| repo.find_tree(id))
        .map_err(fail("writing the tree"))?;
    let signature =
        git2::Signature::now(author.name, author.email).map_err(fail("signing the commit"))?;
    repo.commit(Some("HEAD"), &signature, &signature, message, &tree, &[])
        .map_err(fail("committing"))?;
    if let Some(url) = origin {
        repo.remote("origin", url)
            .map_err(fail("adding the origin remote"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_becomes_one_commit_with_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates/t")).unwrap();
        std::fs::write(dir.path().join("templates/t/t.lua"), "return {}").unwrap();
        let author = Author {
            name: "zrobot test",
            email: "test@zrobot.invalid",
        };
        commit_folder(
            dir.path(),
            &author,
            "one commit",
            Some("https://example.com/a/b"),
        )
        .unwrap();
        let repo = git2::Repository::open(dir.path()).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        assert_eq!(head.message().unwrap(), "one commit");
        assert_eq!(head.author().name().unwrap(), "zrobot test");
        assert_eq!(head.parent_count(), 0);
        let file = head
            .tree()
            .unwrap()
            .get_path(Path::new("templates/t/t.lua"))
            .unwrap();
        assert_eq!(repo.find_blob(file.id()).unwrap().content(), b"return {}");
        assert_eq!(
            repo.find_remote("origin").unwrap().url().unwrap(),
            "https://example.com/a/b"
        );
        // A folder that cannot be a repository is named in the error.
        let file_path = dir.path().join("templates/t/t.lua");
        let err = commit_folder(&file_path, &author, "no", None).unwrap_err();
        assert!(err.to_string().contains("t.lua"), "{err}");
    }
}
