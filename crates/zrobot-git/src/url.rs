//! Template repository URLs: where a repository comes from, which revision to
//! load (`#ref`), and the `host/account/repo` prefix its templates' UIDs get.
//!
//! Accepted forms, each with an optional `#ref` (a branch, a tag or a commit id):
//!
//! | form | example | repository id |
//! |---|---|---|
//! | `https://` (or `http://`, `git://`) | `https://github.com/acme/templates.git` | `github.com/acme/templates` |
//! | `ssh://` | `ssh://git@github.com:22/acme/templates` | `github.com/acme/templates` |
//! | scp-like | `git@github.com:acme/templates.git` | `github.com/acme/templates` |
//! | `file://` | `file:///srv/git/templates` | as a local path |
//! | a local path | `../templates`, `/srv/git/templates` | see below |
//!
//! The id of a remote URL is its host (lower-cased, without user or port) and
//! its two path segments, `.git` stripped. A local path (or `file://` URL)
//! whose repository has an `origin` remote with a remote URL takes that
//! remote's id, so a developer's checkout of `github.com/acme/templates` gives
//! the same UIDs as a clone of it. Without such a remote the id is
//! [`RepoId::local`]: host `local`, the folder's parent name as account and
//! its own name as repository (`/srv/git/templates` gives
//! `local/git/templates`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use zrobot_core::RepoId;

use crate::error::GitError;

/// A parsed template repository URL, with the revision it asks for.
///
/// `Display` hides a password given in the URL; [`TemplateRepoUrl::as_str`]
/// keeps it (for storing the URL, never for logging it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRepoUrl {
    /// The text as given (trimmed), fragment included.
    input: String,
    /// What git is handed: the URL without its fragment, or the absolute path.
    location: String,
    kind: Kind,
    reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Remote {
        host: String,
        account: String,
        repo: String,
        /// A password (or token) given in the URL, hidden when the URL is shown.
        password: Option<String>,
    },
    Local(PathBuf),
}

fn bad(url: &str, reason: impl Into<String>) -> GitError {
    GitError::BadUrl {
        url: redact_any(url),
        reason: reason.into(),
    }
}

/// `text` with the credentials of a URL in it replaced by `***`: a password
/// (`https://bot:***@host/...`), or a user name standing alone in an
/// `http(s)://` or `git://` URL, where it is a token (`https://***@host/...`).
/// An `ssh://` user name (`ssh://git@host/...`) and git's scp-like
/// `git@host:path` carry no secret and are kept.
///
/// The URL is parsed (WHATWG rules, as git and browsers split it), so the
/// password is replaced where it stands, whatever it holds (`@`, `:`, `%40`,
/// the user name, a part of the host). Text that does not parse but has a
/// `scheme://...@` loses everything between `://` and its last `@`. Text
/// without credentials is returned as given.
pub fn redact_any(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let Ok(mut url) = ::url::Url::parse(text) else {
        // Unparsable: hide every character that could be credentials.
        let end = rest.find(['#', '?']).unwrap_or(rest.len());
        return match rest[..end].rfind('@') {
            Some(at) => format!("{scheme}://***{}", &rest[at..]),
            None => text.to_owned(),
        };
    };
    let has_password = url.password().is_some_and(|p| !p.is_empty());
    let user_is_token =
        matches!(url.scheme(), "http" | "https" | "git") && !url.username().is_empty();
    if !has_password && !user_is_token {
        return text.to_owned();
    }
    // Neither setter can fail on a URL that has a host, as this one does.
    if has_password {
        let _ = url.set_password(Some("***"));
    }
    if user_is_token && !has_password {
        let _ = url.set_username("***");
    }
    url.to_string()
}

impl TemplateRepoUrl {
    /// Parses a URL or a local path, with an optional `#ref`.
    pub fn parse(input: &str) -> Result<TemplateRepoUrl, GitError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(bad(
                input,
                "it is empty; give an https://, ssh:// or file:// URL, `git@host:account/repo`, or a local path",
            ));
        }
        let (location, reference) = match input.split_once('#') {
            None => (input, None),
            Some((location, reference)) => {
                check_reference(input, reference)?;
                (location, Some(reference.to_owned()))
            }
        };
        let kind = if let Some((scheme, rest)) = location.split_once("://") {
            match scheme.to_ascii_lowercase().as_str() {
                "file" => Kind::Local(file_url_path(input, rest)?),
                "https" | "http" | "ssh" | "git" | "ssh+git" | "git+ssh" => {
                    let (authority, path) = rest.split_once('/').ok_or_else(|| {
                        bad(input, "it has no path; write it as SCHEME://host/account/repo")
                    })?;
                    remote_kind(input, authority, path)?
                }
                other => {
                    return Err(bad(
                        input,
                        format!("the scheme `{other}` is not supported; use https://, ssh://, git://, file://, `git@host:account/repo` or a local path"),
                    ))
                }
            }
        } else if let Some((authority, path)) = scp_like(location) {
            remote_kind(input, authority, path)?
        } else {
            let path = Path::new(location);
            Kind::Local(std::path::absolute(path).map_err(|e| {
                bad(
                    input,
                    format!("cannot make the path absolute ({e}); give an absolute path"),
                )
            })?)
        };
        if let Kind::Local(path) = &kind {
            check_id(input, &RepoId::local(path))?;
        }
        let location = match &kind {
            Kind::Local(path) => path.display().to_string(),
            Kind::Remote { .. } => location.to_owned(),
        };
        Ok(TemplateRepoUrl {
            input: input.to_owned(),
            location,
            kind,
            reference,
        })
    }

    /// The URL as given, `#ref` included. It may hold a password or token:
    /// store it, never log it (use `Display` for that).
    pub fn as_str(&self) -> &str {
        &self.input
    }

    /// What git is handed: the URL without its `#ref`, or the absolute path
    /// of a local repository.
    pub fn git_url(&self) -> &str {
        &self.location
    }

    /// The branch, tag or commit id asked for; `None` means the default branch.
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }

    /// The same repository at another revision (`None`: the default branch).
    pub fn with_reference(&self, reference: Option<&str>) -> Result<TemplateRepoUrl, GitError> {
        if let Some(r) = reference {
            check_reference(&format!("{}#{r}", self.location), r)?;
        }
        let mut url = self.clone();
        url.reference = reference.map(str::to_owned);
        url.input = match reference {
            Some(r) => format!("{}#{r}", self.input_location()),
            None => self.input_location().to_owned(),
        };
        Ok(url)
    }

    fn input_location(&self) -> &str {
        self.input
            .split_once('#')
            .map_or(self.input.as_str(), |(l, _)| l)
    }

    /// The folder of a local repository (a path or a `file://` URL).
    pub fn local_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Local(path) => Some(path),
            Kind::Remote { .. } => None,
        }
    }

    /// Whether git reaches the repository over the network.
    pub fn is_remote(&self) -> bool {
        matches!(self.kind, Kind::Remote { .. })
    }

    /// Whether git reaches the repository over ssh (so auth is by key).
    pub(crate) fn is_ssh(&self) -> bool {
        self.is_remote() && {
            let lower = self.location.to_ascii_lowercase();
            !(lower.starts_with("https://")
                || lower.starts_with("http://")
                || lower.starts_with("git://"))
        }
    }

    /// The password or token the URL carries, to scrub from messages.
    pub(crate) fn password(&self) -> Option<&str> {
        match &self.kind {
            Kind::Remote { password, .. } => password.as_deref(),
            Kind::Local(_) => None,
        }
    }

    /// The `host/account/repo` prefix of the UIDs of this repository's
    /// templates (see the module documentation for the rules). For a local
    /// repository this reads its `origin` remote.
    pub fn repo_id(&self) -> RepoId {
        match &self.kind {
            Kind::Remote {
                host,
                account,
                repo,
                ..
            } => RepoId::new(host, account, repo),
            Kind::Local(path) => origin_id(path).unwrap_or_else(|| RepoId::local(path)),
        }
    }
}

/// The id of the `origin` remote of the repository at `path`, when it is a remote URL.
fn origin_id(path: &Path) -> Option<RepoId> {
    let repo = git2::Repository::open(path).ok()?;
    let remote = repo.find_remote("origin").ok()?;
    let url = TemplateRepoUrl::parse(remote.url().ok()?).ok()?;
    match url.kind {
        Kind::Remote { .. } => Some(url.repo_id()),
        Kind::Local(_) => None,
    }
}

fn check_reference(input: &str, reference: &str) -> Result<(), GitError> {
    if reference.is_empty() {
        return Err(bad(
            input,
            "nothing follows `#`; write a branch, tag or commit id after it, or drop the `#`",
        ));
    }
    if reference.starts_with('-')
        || !git2::Reference::is_valid_name(&format!("refs/heads/{reference}"))
    {
        return Err(bad(
            input,
            format!("`{reference}` after `#` is not a valid branch, tag or commit name"),
        ));
    }
    Ok(())
}

/// `file:///abs/path` (or `file://localhost/abs/path`).
fn file_url_path(input: &str, rest: &str) -> Result<PathBuf, GitError> {
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err(bad(
            input,
            "a file URL takes an absolute path and no host: file:///path/to/repo",
        ));
    }
    Ok(PathBuf::from(path))
}

/// `[user@]host:path`, git's scp-like syntax: a `:` before any `/`, and more
/// than one letter before it (so that `C:\repo` stays a path).
fn scp_like(location: &str) -> Option<(&str, &str)> {
    let colon = location.find(':')?;
    let before = &location[..colon];
    if before.contains('/') || before.len() < 2 {
        return None;
    }
    Some((before, &location[colon + 1..]))
}

fn remote_kind(input: &str, authority: &str, path: &str) -> Result<Kind, GitError> {
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let password = userinfo
        .and_then(|u| u.split_once(':'))
        .map(|(_, p)| p.to_owned());
    let host = if let Some(bracketed) = hostport.strip_prefix('[') {
        // An IPv6 literal: `[::1]:22`.
        let (h, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad(input, "an IPv6 host lacks its closing `]`"))?;
        check_port(input, after.strip_prefix(':'))?;
        h
    } else {
        let (h, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        check_port(input, port)?;
        h
    };
    if host.is_empty() {
        return Err(bad(input, "it names no host"));
    }
    if host.eq_ignore_ascii_case("local") {
        // Its ids would be those of folders on this machine, and so would
        // their clone folders.
        return Err(bad(
            input,
            "the host name `local` is kept for repositories on this machine; give the host's full name",
        ));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(bad(
            input,
            format!("`{host}` is not a host name (letters, digits, `.`, `-` and `_` only)"),
        ));
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [account, repo] if valid_segment(account) && valid_segment(repo.trim_end_matches(".git")) => {
            Ok(Kind::Remote {
                host: host.to_ascii_lowercase(),
                account: (*account).to_owned(),
                repo: repo.trim_end_matches(".git").to_owned(),
                password,
            })
        }
        [_, _] => Err(bad(
            input,
            "its account or repository name is empty, `.` or `..`",
        )),
        [_, _, _, ..] => Err(bad(
            input,
            format!("the path `{path}` has more than two segments; a template UID has one account and one repository (host/account/repo), so nested groups are not supported"),
        )),
        _ => Err(bad(
            input,
            format!("the path `{path}` must be account/repo, as in https://github.com/acme/templates"),
        )),
    }
}

fn check_port(input: &str, port: Option<&str>) -> Result<(), GitError> {
    match port {
        None => Ok(()),
        Some(p) if !p.is_empty() && p.parse::<u16>().is_ok() => Ok(()),
        Some(p) => Err(bad(input, format!("`{p}` is not a port number"))),
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('\\') && !s.contains('/')
}

/// Every segment of a repository id names one folder of its clone's path
/// (`<host>/<account>/<repo>`): an empty one would put the clone at its
/// account's folder, over the clones of other repositories.
pub(crate) fn check_id(input: &str, id: &RepoId) -> Result<(), GitError> {
    for (what, segment) in [
        ("host", &id.host),
        ("account", &id.account),
        ("repository", &id.repo),
    ] {
        if !valid_segment(segment) {
            return Err(bad(
                input,
                format!(
                    "its {what} name `{segment}` is empty, `.` or `..` (template UIDs are \
                     host/account/repo); give the repository's own folder or URL, not its .git folder"
                ),
            ));
        }
    }
    Ok(())
}

impl FromStr for TemplateRepoUrl {
    type Err = GitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TemplateRepoUrl::parse(s)
    }
}

impl fmt::Display for TemplateRepoUrl {
    /// The URL as given, with its credentials replaced by `***` (see [`redact_any`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_any(&self.input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> String {
        TemplateRepoUrl::parse(s).unwrap().repo_id().to_string()
    }

    #[test]
    fn remote_forms_give_the_same_id() {
        for s in [
            "https://github.com/acme/templates",
            "https://GitHub.com/acme/templates.git",
            "https://user:token@github.com:443/acme/templates/",
            "http://github.com/acme/templates",
            "ssh://git@github.com/acme/templates",
            "ssh://git@github.com:2222/acme/templates.git",
            "git@github.com:acme/templates.git",
            "git@github.com:/acme/templates",
            "github.com:acme/templates",
        ] {
            assert_eq!(id(s), "github.com/acme/templates", "{s}");
        }
    }

    #[test]
    fn references() {
        let u = TemplateRepoUrl::parse("https://github.com/acme/templates#v1.2.0").unwrap();
        assert_eq!(u.reference(), Some("v1.2.0"));
        assert_eq!(u.git_url(), "https://github.com/acme/templates");
        let u = TemplateRepoUrl::parse("git@github.com:acme/t.git#feature/x").unwrap();
        assert_eq!(u.reference(), Some("feature/x"));
        assert_eq!(u.git_url(), "git@github.com:acme/t.git");
        let v = u.with_reference(Some("abc123")).unwrap();
        assert_eq!(v.as_str(), "git@github.com:acme/t.git#abc123");
        assert_eq!(
            v.with_reference(None).unwrap().as_str(),
            "git@github.com:acme/t.git"
        );
        assert!(TemplateRepoUrl::parse("https://h/a/r")
            .unwrap()
            .reference()
            .is_none());
    }

    #[test]
    fn local_forms() {
        let u = TemplateRepoUrl::parse("file:///nonexistent/zr/my-templates#main").unwrap();
        assert_eq!(
            u.local_path(),
            Some(Path::new("/nonexistent/zr/my-templates"))
        );
        assert_eq!(u.repo_id().to_string(), "local/zr/my-templates");
        let p = TemplateRepoUrl::parse("/nonexistent/zr/my-templates").unwrap();
        assert_eq!(p.repo_id(), u.repo_id());
        let rel = TemplateRepoUrl::parse("some/relative/dir").unwrap();
        assert!(rel.local_path().unwrap().is_absolute());
        assert!(!rel.is_remote());
    }

    #[test]
    fn password_is_hidden() {
        let u = TemplateRepoUrl::parse("https://bot:s3cr3t@github.com/acme/t#v1").unwrap();
        assert_eq!(u.to_string(), "https://bot:***@github.com/acme/t#v1");
        assert!(u.as_str().contains("s3cr3t"));
        let e = TemplateRepoUrl::parse("https://bot:s3cr3t@github.com/acme").unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    /// Awkward passwords are replaced where they stand, and tokens given as
    /// the user name are hidden too.
    #[test]
    fn redaction_by_position() {
        for (url, shown, secret) in [
            (
                "https://bot:s3cr3t@github.com/acme/t#v1",
                "https://bot:***@github.com/acme/t#v1",
                "s3cr3t",
            ),
            (
                "https://TOKEN123@github.com/acme/data",
                "https://***@github.com/acme/data",
                "TOKEN123",
            ),
            (
                "https://bot:bot@github.com/acme/t",
                "https://bot:***@github.com/acme/t",
                ":bot@",
            ),
            (
                "https://u:github@github.com/acme/t",
                "https://u:***@github.com/acme/t",
                "u:github",
            ),
            (
                "https://u:p@ss@host.example/a/b",
                "https://u:***@host.example/a/b",
                "ss",
            ),
            (
                "https://u:a:b@host.example/a/b",
                "https://u:***@host.example/a/b",
                "a:b",
            ),
            (
                "https://u:p%40ss@host.example/a/b",
                "https://u:***@host.example/a/b",
                "p%40ss",
            ),
            (
                "https://tok:@host.example/a/b",
                "https://***@host.example/a/b",
                "tok",
            ),
            (
                "ssh://git:pw@host.example/a/b",
                "ssh://git:***@host.example/a/b",
                "pw",
            ),
            (
                "https://u:p/w@host.example/a/b",
                "https://***@host.example/a/b",
                "p/w",
            ),
        ] {
            assert_eq!(redact_any(url), shown, "{url}");
            assert!(!redact_any(url).contains(secret), "{url}");
            if let Ok(parsed) = TemplateRepoUrl::parse(url) {
                assert_eq!(parsed.to_string(), shown, "{url}");
            }
        }
        for plain in [
            "git@github.com:acme/t.git",
            "ssh://git@github.com/acme/t",
            "https://GitHub.com/acme/t",
            "/srv/git/templates",
            "github.com:acme/templates",
        ] {
            assert_eq!(redact_any(plain), plain);
        }
    }

    #[test]
    fn errors_name_the_url_and_the_fault() {
        for (s, want) in [
            ("", "empty"),
            ("ftp://host/a/b", "scheme `ftp`"),
            ("https://github.com", "no path"),
            ("https://github.com/acme", "account/repo"),
            ("https://gitlab.com/a/b/c", "nested groups"),
            ("https:///a/b", "no host"),
            ("https://host:xx/a/b", "not a port"),
            ("https://host/a/b#", "nothing follows `#`"),
            ("https://host/a/b#a..b", "not a valid"),
            ("file://relative/path", "absolute path"),
            ("https://ho st/a/b", "not a host name"),
        ] {
            let e = TemplateRepoUrl::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
            if !s.is_empty() {
                assert!(e.contains(s.split('#').next().unwrap()), "{s}: {e}");
            }
        }
    }
}
