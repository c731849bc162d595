//! Robot settings, and the robots this one knows by name with the secrets of
//! its services there (kept in settings).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::Robot;
use crate::error::CoreError;
use crate::remote::RemoteRobot;
use crate::store::StoreOp;

/// The known robots by name, each shared so that a remote call takes one
/// without copying its secrets.
pub(super) type KnownRobots = BTreeMap<String, Arc<crate::remote::RemoteRobot>>;

impl Robot {
    /// A robot setting (webhooks, known robots...).
    pub fn setting(&self, key: &str) -> Option<Value> {
        self.0
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Stores a robot setting durably; `Null` removes it.
    pub async fn put_setting(&self, key: &str, value: Value) -> Result<(), CoreError> {
        self.0
            .store
            .commit(vec![StoreOp::PutSetting {
                key: key.to_owned(),
                value: value.clone(),
            }])
            .await?;
        if key == crate::remote::SETTING {
            self.know_robots(&value);
        }
        let mut settings = self.0.settings.write().unwrap_or_else(|e| e.into_inner());
        if value.is_null() {
            settings.remove(key);
        } else {
            settings.insert(key.to_owned(), value);
        }
        Ok(())
    }

    /// Parses the setting of the known robots into the shared list.
    pub(super) fn know_robots(&self, setting: &Value) {
        let robots: crate::remote::RemoteRobots =
            serde_json::from_value(setting.clone()).unwrap_or_default();
        let known = robots.into_iter().map(|(n, r)| (n, Arc::new(r))).collect();
        *self.0.remotes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(known);
    }

    /// The robots this robot knows by name.
    pub fn remote_robots(&self) -> crate::remote::RemoteRobots {
        let known = self
            .0
            .remotes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        known
            .iter()
            .map(|(n, r)| (n.clone(), RemoteRobot::clone(r)))
            .collect()
    }

    /// One known robot: a lookup, no copy.
    pub fn remote_robot(&self, name: &str) -> Option<Arc<crate::remote::RemoteRobot>> {
        self.0
            .remotes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Learns (or re-learns) a robot: its URL and the token to present. The
    /// secrets already kept for it stay.
    pub async fn add_remote_robot(
        &self,
        name: &str,
        url: &str,
        token: Option<String>,
    ) -> Result<(), CoreError> {
        if !crate::remote::valid_robot_name(name) {
            return Err(CoreError::InvalidName(name.to_owned()));
        }
        self.update_remote_robots(|robots| {
            let r = robots.entry(name.to_owned()).or_default();
            r.url = url.to_owned();
            if token.is_some() {
                r.token = token.clone();
            }
        })
        .await
    }

    /// Learns a robot a template names: a new name is added with no token;
    /// a known name must keep its URL (compared normalised), since its token
    /// and secrets were given for that URL. Only the operator moves a robot
    /// ([`Self::add_remote_robot`]).
    pub async fn learn_remote_robot(
        &self,
        name: &str,
        url: &str,
    ) -> Result<(), crate::remote::LearnError> {
        use crate::remote::LearnError;
        if !crate::remote::valid_robot_name(name) {
            return Err(CoreError::InvalidName(name.to_owned()).into());
        }
        let _guard = self.0.remote_lock.lock().await;
        let mut robots = self.remote_robots();
        if let Some(known) = robots.get(name) {
            if crate::remote::same_url(&known.url, url) {
                return Ok(());
            }
            return Err(LearnError::Moved {
                name: name.to_owned(),
                known: known.url.clone(),
                asked: url.to_owned(),
            });
        }
        robots.insert(
            name.to_owned(),
            crate::remote::RemoteRobot {
                url: url.to_owned(),
                ..Default::default()
            },
        );
        self.put_remote_robots(&robots).await?;
        Ok(())
    }

    /// Keeps, durably, the secret of service `guid` on robot `name`.
    pub async fn add_remote_secret(
        &self,
        name: &str,
        guid: uuid::Uuid,
        secret: &str,
    ) -> Result<(), CoreError> {
        self.update_remote_robots(|robots| {
            if let Some(r) = robots.get_mut(name) {
                r.service_secrets.insert(guid, secret.to_owned());
            }
        })
        .await
    }

    /// Forgets the secret of service `guid` on robot `name`: the service was
    /// deleted, or that robot no longer has it.
    pub async fn forget_remote_secret(
        &self,
        name: &str,
        guid: uuid::Uuid,
    ) -> Result<(), CoreError> {
        if self
            .remote_robot(name)
            .is_none_or(|r| !r.service_secrets.contains_key(&guid))
        {
            return Ok(());
        }
        self.update_remote_robots(|robots| {
            if let Some(r) = robots.get_mut(name) {
                r.service_secrets.remove(&guid);
            }
        })
        .await
    }

    /// Moves secrets of the old, unattributed list of robot `name` to the
    /// services they were found to grant. A secret no longer in the list
    /// (moved meanwhile) is left alone.
    pub async fn attribute_remote_secrets(
        &self,
        name: &str,
        found: &[(uuid::Uuid, String)],
    ) -> Result<(), CoreError> {
        if found.is_empty() {
            return Ok(());
        }
        self.update_remote_robots(|robots| {
            if let Some(r) = robots.get_mut(name) {
                for (guid, secret) in found {
                    if let Some(i) = r.secrets.iter().position(|s| s == secret) {
                        r.secrets.remove(i);
                        r.service_secrets.insert(*guid, secret.clone());
                    }
                }
            }
        })
        .await
    }

    async fn update_remote_robots(
        &self,
        f: impl FnOnce(&mut crate::remote::RemoteRobots),
    ) -> Result<(), CoreError> {
        // One writer at a time, so concurrent updates do not lose each other.
        let _guard = self.0.remote_lock.lock().await;
        let mut robots = self.remote_robots();
        f(&mut robots);
        self.put_remote_robots(&robots).await
    }

    /// Stores the known robots; the caller holds `remote_lock`.
    async fn put_remote_robots(
        &self,
        robots: &crate::remote::RemoteRobots,
    ) -> Result<(), CoreError> {
        let value = serde_json::to_value(robots).map_err(|e| {
            crate::store::StoreError::failed("settings", "encoding the known robots", e)
        })?;
        self.put_setting(crate::remote::SETTING, value).await
    }
}
