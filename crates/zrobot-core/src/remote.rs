//! Other robots this robot knows by name: where they are, what to present to
//! them, and the secret of each service it made there. Plain data kept in the
//! robot's settings; talking to them is the job of the engine's proxies.
//!
//! Where a known robot lives is set by its operator (`--robot`, the API, the
//! CLI); a template may add a robot by a new name, never move a known one,
//! because the token and the secrets kept for a robot were given for its URL.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::CoreError;

/// The settings key of the known robots.
pub const SETTING: &str = "robots";

/// One known robot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteRobot {
    pub url: String,
    /// A token (JWT or god token) presented as `ZrobotAdmin` and `ZrobotUser`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Secrets kept by older versions, before secrets were kept per service:
    /// the engine matches each to its service once (and moves it to
    /// `service_secrets`); one it cannot match stays here, never lost, and is
    /// presented only when listing services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The secret of each service of that robot this robot created (or was
    /// given), by the service's guid: a call about a service presents its
    /// secret and no other.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_secrets: BTreeMap<Uuid, String>,
}

impl RemoteRobot {
    /// Every secret held for that robot: what a `GET /services` presents.
    pub fn all_secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = self.service_secrets.values().cloned().collect();
        all.extend(self.secrets.iter().cloned());
        all
    }

    /// The secret of service `guid`, if this robot holds it.
    pub fn secret_of(&self, guid: Uuid) -> Option<&str> {
        self.service_secrets.get(&guid).map(String::as_str)
    }
}

/// Every known robot, by name.
pub type RemoteRobots = BTreeMap<String, RemoteRobot>;

/// Why a robot could not be learnt.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// A template asked to move a known robot elsewhere.
    #[error(
        "robot `{name}` is known at {known}; a template cannot move it to {asked} (its token and \
         service secrets were given for {known}): use another name for another robot, or have \
         the operator change its address with `--robot {name}=URL`"
    )]
    Moved {
        name: String,
        known: String,
        asked: String,
    },
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// A robot name: letters, digits, `-`, `_`, `.`.
pub fn valid_robot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A robot URL in one spelling: scheme and host lower-cased, the scheme's
/// default port and trailing slashes dropped, so `HTTP://Edge:80/` and
/// `http://edge` are the same robot.
pub fn normalize_url(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.trim_end_matches('/').to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some(":80"),
        "https" => Some(":443"),
        _ => None,
    };
    if let Some(port) = default_port {
        if let Some(stripped) = authority.strip_suffix(port) {
            authority = stripped.to_owned();
        }
    }
    format!("{scheme}://{authority}{}", path.trim_end_matches('/'))
}

/// Whether two URLs name the same robot (see [`normalize_url`]).
pub fn same_url(a: &str, b: &str) -> bool {
    normalize_url(a) == normalize_url(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_compare_normalised() {
        assert!(same_url("http://edge:6600", "http://edge:6600/"));
        assert!(same_url("HTTP://Edge:80/", "http://edge"));
        assert!(same_url("https://e/api/", "https://e:443/api"));
        assert!(!same_url("http://edge:6600", "http://elsewhere:6600"));
        assert!(!same_url("http://edge:6600", "https://edge:6600"));
        assert!(!same_url("http://edge/a", "http://edge/b"));
    }

    #[test]
    fn old_settings_still_read() {
        let old: RemoteRobot =
            serde_json::from_value(serde_json::json!({"url": "http://e", "secrets": ["s1"]}))
                .unwrap();
        assert_eq!(old.secrets, vec!["s1".to_owned()]);
        assert!(old.service_secrets.is_empty());
        assert_eq!(old.all_secrets(), vec!["s1".to_owned()]);
    }
}
