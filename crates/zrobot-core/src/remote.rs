//! Other robots this robot knows by name: where they are, what to present to
//! them, and the secrets of the services it made there. Plain data kept in the
//! robot's settings; talking to them is the job of the engine's proxies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The settings key of the known robots.
pub const SETTING: &str = "robots";

/// One known robot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteRobot {
    pub url: String,
    /// A token (JWT or god token) presented as `ZrobotAdmin` and `ZrobotUser`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Secrets of the services this robot created there, or was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// Every known robot, by name.
pub type RemoteRobots = BTreeMap<String, RemoteRobot>;

/// A robot name: letters, digits, `-`, `_`, `.`.
pub fn valid_robot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
