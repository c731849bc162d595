//! Template UIDs (`host/account/repo/name/version`) and the repositories they come from.

use std::fmt;
use std::path::Path;

/// Where templates come from: the `host/account/repo` part of their UIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId {
    pub host: String,
    pub account: String,
    pub repo: String,
}

impl RepoId {
    pub fn new(host: &str, account: &str, repo: &str) -> RepoId {
        RepoId {
            host: host.to_ascii_lowercase(),
            account: account.to_owned(),
            // One `.git` suffix, as git names bare repositories; `x.git.git` keeps one.
            repo: repo.strip_suffix(".git").unwrap_or(repo).to_owned(),
        }
    }

    /// The UID prefix of a folder that has no remote: host `local`, the
    /// folder's parent name as account and its own name as repository, so the
    /// same folder always gives the same UIDs.
    pub fn local(path: &Path) -> RepoId {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let name = |p: Option<&Path>| {
            p.and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "root".to_owned())
        };
        RepoId::new("local", &name(abs.parent()), &name(Some(&abs)))
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.host, self.account, self.repo)
    }
}

/// The full identity of one template version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateUid {
    pub repo: RepoId,
    pub name: String,
    pub version: semver::Version,
}

impl TemplateUid {
    /// Parses `host/account/repo/name/version`.
    pub fn parse(s: &str) -> Option<TemplateUid> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() != 5 || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let version = semver::Version::parse(parts[4]).ok()?;
        // A UID is already the canonical form: its segments are taken as they
        // are (no `.git` stripped), so that printing and parsing round-trip.
        let repo = RepoId {
            host: parts[0].to_ascii_lowercase(),
            account: parts[1].to_owned(),
            repo: parts[2].to_owned(),
        };
        Some(TemplateUid {
            repo,
            name: parts[3].to_owned(),
            version,
        })
    }

    /// Whether `reference` (already split on `/`) names this template: it must
    /// be a suffix of `host/account/repo/name/version` or of `host/account/repo/name`.
    pub fn matches(&self, reference: &[&str]) -> bool {
        let version = self.version.to_string();
        let full = [
            self.repo.host.as_str(),
            self.repo.account.as_str(),
            self.repo.repo.as_str(),
            self.name.as_str(),
            version.as_str(),
        ];
        let suffix_of = |segments: &[&str]| {
            reference.len() <= segments.len()
                && segments[segments.len() - reference.len()..]
                    .iter()
                    .zip(reference)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b))
        };
        !reference.is_empty() && (suffix_of(&full) || suffix_of(&full[..4]))
    }
}

impl fmt::Display for TemplateUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.repo, self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let uid = TemplateUid::parse("github.com/acme/templates/node/1.2.0").unwrap();
        assert_eq!(uid.to_string(), "github.com/acme/templates/node/1.2.0");
        for r in [
            "node",
            "node/1.2.0",
            "acme/templates/node",
            "github.com/acme/templates/node/1.2.0",
        ] {
            let segs: Vec<&str> = r.split('/').collect();
            assert!(uid.matches(&segs), "{r}");
        }
        for r in ["vm", "node/1.2.1", "other/node", "templates/node/1.2"] {
            let segs: Vec<&str> = r.split('/').collect();
            assert!(!uid.matches(&segs), "{r}");
        }
        assert!(TemplateUid::parse("a/b/c/d/not-semver").is_none());
        assert!(TemplateUid::parse("a/b/d/1.0.0").is_none());
    }

    #[test]
    fn local_repo_ids_are_stable() {
        let a = RepoId::local(Path::new("/tmp/x/my-repo"));
        assert_eq!(a.to_string(), "local/x/my-repo");
    }
}
