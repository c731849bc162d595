//! Moving services to a newer version of their template, one by one, with
//! their waiting tasks kept: `migrate(self, from_version)` of the new code,
//! then its `validate`. A service whose move fails stays where it was and
//! says why in its log and its state table (`upgrade/<version>=error`, until
//! a later move works).

use std::sync::Arc;

use serde_json::Value;

use super::Robot;
use crate::engine::Hook;
use crate::events::What;
use crate::service::{LogLevel, Service, TagState};
use crate::store::StoreOp;
use crate::template::Template;

/// What [`Robot::upgrade_services`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UpgradeReport {
    /// `(service, from UID, to UID)`.
    pub moved: Vec<(String, String, String)>,
    /// `(service, to UID, why it stayed)`.
    pub failed: Vec<(String, String, String)>,
    /// `(service, UID)`: already on the newest version loaded.
    pub newest: Vec<(String, String)>,
}

impl Robot {
    /// Moves every service whose template has a newer loaded version to it.
    pub async fn upgrade_services(&self) -> UpgradeReport {
        let mut report = UpgradeReport::default();
        let mut all: Vec<Arc<Service>> = self.services().by_guid.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        for svc in all {
            let current = svc.template();
            let newest = match self.0.templates.newest_version_of(&current.uid) {
                Some(newest) if newest.uid.version > current.uid.version => newest,
                _ => {
                    report
                        .newest
                        .push((svc.name.clone(), current.uid.to_string()));
                    continue;
                }
            };
            match self.upgrade_service(&svc, &newest).await {
                Ok(()) => report.moved.push((
                    svc.name.clone(),
                    current.uid.to_string(),
                    newest.uid.to_string(),
                )),
                Err(why) => report
                    .failed
                    .push((svc.name.clone(), newest.uid.to_string(), why)),
            }
        }
        report
    }

    /// Moves one service to `target`; on failure it stays on its version.
    pub async fn upgrade_service(
        &self,
        svc: &Arc<Service>,
        target: &Arc<Template>,
    ) -> Result<(), String> {
        let from = svc.template();
        let bound = self.0.config.delete_running_bound;
        self.pause(svc, &format!("moving to {}", target.uid), bound)
            .await
            .map_err(|e| e.to_string())?;
        let result = self.migrate(svc, &from.uid.version, target).await;
        let tag = target.uid.version.to_string();
        match &result {
            Ok(()) => {
                // Earlier failed moves are moot once it moved: the table
                // tells the last move, not every attempt.
                svc.state_delete("upgrade", None);
                self.0.events.publish(
                    svc,
                    What::ServiceUpgraded {
                        from: from.uid_text.clone(),
                        to: target.uid_text.clone(),
                    },
                );
                svc.log(
                    LogLevel::Info,
                    format!("moved from {} to {}", from.uid, target.uid),
                );
                self.start_new_recurring(svc, &from, target);
            }
            Err(why) => {
                svc.state_set("upgrade", &tag, TagState::Error);
                svc.log(
                    LogLevel::Error,
                    format!(
                        "stays on {}: moving to {} failed: {why}",
                        from.uid, target.uid
                    ),
                );
            }
        }
        // The state table says how the move went: stored now, not at the
        // next task's end.
        if let Err(e) = self.save_state(svc).await {
            tracing::warn!(service = %svc.name, "the state after a move is not stored: {e}");
        }
        self.resume(svc);
        result
    }

    /// Moves the data of `svc`, on version `from` until now, to `target`:
    /// its `migrate`, its defaults and its `validate`, then stores the move.
    pub(super) async fn migrate(
        &self,
        svc: &Arc<Service>,
        from: &semver::Version,
        target: &Arc<Template>,
    ) -> Result<(), String> {
        let mut data = (*svc.data()).clone();
        if target.has_hook(Hook::Migrate) {
            let from_version = Value::String(from.to_string());
            if let Some(d) = self
                .run_hook_on(target, svc, Hook::Migrate, from_version)
                .await?
            {
                data = d;
            }
        }
        // The new schema may add fields with defaults.
        let data = target.prepare_data(data).map_err(|e| e.to_string())?;
        let previous = svc.lock().data.clone();
        svc.lock().data = Arc::new(data.clone());
        if target.has_hook(Hook::Validate) {
            match self
                .run_hook_on(target, svc, Hook::Validate, Value::Null)
                .await
            {
                Ok(Some(d)) => svc.lock().data = Arc::new(d),
                Ok(None) => {}
                Err(e) => {
                    svc.lock().data = previous;
                    return Err(format!("validate of the new version failed: {e}"));
                }
            }
        }
        let data = svc.data();
        let commit = self
            .0
            .store
            .commit(vec![
                StoreOp::SaveTemplate {
                    service: svc.guid,
                    template_uid: target.uid.to_string(),
                },
                StoreOp::SaveData {
                    service: svc.guid,
                    data: self.stored_data(target, &data),
                },
            ])
            .await;
        if let Err(e) = commit {
            svc.lock().data = previous;
            return Err(format!("the move could not be stored: {e}"));
        }
        svc.set_template(target.clone());
        Ok(())
    }

    /// Starts the recurring actions the new version adds (those it shares
    /// with the old one already run, on the new policy).
    /// Moves the services on a version of `loaded` whose files changed
    /// without a new version to the new load of it: their next task runs
    /// the new code (a running one ends on the old). `(service, UID)` of
    /// each.
    pub(super) fn reload_changed(&self, loaded: &[Arc<Template>]) -> Vec<(String, String)> {
        let mut reloaded = Vec::new();
        let mut all: Vec<Arc<Service>> = self.services().by_guid.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        for svc in all {
            let old = svc.template();
            let Some(new) = loaded.iter().find(|t| t.uid == old.uid) else {
                continue;
            };
            if Arc::ptr_eq(&old, new) || old.digest == new.digest {
                continue;
            }
            svc.set_template(new.clone());
            self.start_new_recurring(&svc, &old, new);
            svc.log(
                LogLevel::Info,
                format!(
                    "runs the new code of {}: its files changed, its version did not",
                    new.uid
                ),
            );
            tracing::info!(service = %svc.name, template = %new.uid, "the template's files changed without a new version: the service runs the new code from its next task");
            reloaded.push((svc.name.clone(), new.uid_text.clone()));
        }
        reloaded
    }

    fn start_new_recurring(&self, svc: &Arc<Service>, from: &Template, target: &Template) {
        for (action, policy) in &target.manifest.actions {
            if let Some(period) = policy.recurring {
                if from.policy(action).recurring.is_none() {
                    self.0.recurring.add(svc, action, period);
                }
            }
        }
    }
}
