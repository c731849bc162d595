//! A start: services and waiting tasks read back from the store, `validate`
//! run on each (first where tasks wait), services whose template is missing
//! kept aside until it is loaded.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::{RestoreReport, Robot};
use crate::engine::Hook;
use crate::error::CoreError;
use crate::service::{LogLevel, Service, ServiceStatus, TagState};
use crate::store::ServiceRecord;
use crate::task::{Task, TaskRecord, TaskState};

impl Robot {
    /// Services from the store whose template is not loaded: `(name, UID)`.
    pub fn missing_services(&self) -> Vec<(String, String)> {
        self.0
            .missing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(s, _)| (s.name.clone(), s.template_uid.clone()))
            .collect()
    }

    /// Brings back, after a start, every service and waiting task the store
    /// holds. Call it once, after the templates are loaded. Waiting tasks keep
    /// their order; a task that was running runs again (its attempt count
    /// shows it). Each service runs `validate` before any task; one that fails
    /// it is retried in the background and runs nothing until it passes.
    pub async fn restore(&self) -> Result<RestoreReport, CoreError> {
        let loaded = self.read_store().await?;
        Ok(self.restore_from(loaded))
    }

    /// Reads everything the store holds and makes the robot settings
    /// current, so a start can consult them before loading templates; then
    /// hand the rest to [`Robot::restore_from`].
    pub async fn read_store(&self) -> Result<crate::store::Loaded, CoreError> {
        let mut loaded = self.0.store.load().await?;
        if let Some(robots) = loaded.settings.get(crate::remote::SETTING) {
            self.know_robots(robots);
        }
        *self.0.settings.write().unwrap_or_else(|e| e.into_inner()) =
            std::mem::take(&mut loaded.settings);
        Ok(loaded)
    }

    /// The second half of [`Robot::restore`].
    pub fn restore_from(&self, loaded: crate::store::Loaded) -> RestoreReport {
        self.restore_keys(loaded.keys, loaded.waiting.iter());
        let mut tasks_of: HashMap<Uuid, Vec<TaskRecord>> = HashMap::new();
        let mut max_seq = 0;
        for t in loaded.waiting {
            max_seq = max_seq.max(t.seq);
            tasks_of.entry(t.service_guid).or_default().push(t);
        }
        self.0.seq.fetch_max(max_seq + 1, Ordering::Relaxed);
        let mut report = RestoreReport::default();
        let mut restored = Vec::with_capacity(loaded.services.len());
        for record in loaded.services {
            let tasks = tasks_of.remove(&record.guid).unwrap_or_default();
            match self.revive(record, tasks, &mut report) {
                Some(svc) => restored.push(svc),
                None => continue,
            }
        }
        report.services = restored.len();
        self.validate_all(restored);
        report
    }

    /// Lists a stored service again with its waiting tasks, not yet running
    /// them; `None` if its template is missing (it is kept aside then).
    fn revive(
        &self,
        record: ServiceRecord,
        tasks: Vec<TaskRecord>,
        report: &mut RestoreReport,
    ) -> Option<Arc<Service>> {
        let exact = crate::template::TemplateUid::parse(&record.template_uid);
        let template = exact.as_ref().and_then(|u| self.0.templates.get(u));
        let template = match template {
            Some(t) => t,
            None => match exact
                .as_ref()
                .and_then(|u| self.0.templates.newest_version_of(u))
            {
                Some(t) => {
                    report.fallbacks.push((
                        record.name.clone(),
                        record.template_uid.clone(),
                        t.uid.to_string(),
                    ));
                    t
                }
                None => {
                    report
                        .missing
                        .push((record.name.clone(), record.template_uid.clone()));
                    self.0
                        .missing
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((record, tasks));
                    return None;
                }
            },
        };
        let (data, lost) = self.opened_data(&template, record.data);
        if !lost.is_empty() {
            report
                .lost_secrets
                .push((record.name.clone(), lost.clone()));
        }
        let svc = Arc::new(Service::new(
            record.guid,
            record.name.clone(),
            template.clone(),
            data,
            record.public,
            record.created,
            ServiceStatus::Invalid("not validated yet since the robot started".into()),
            self.0.events.clone(),
        ));
        if !lost.is_empty() {
            svc.log(
                LogLevel::Error,
                format!(
                    "secret field(s) {} could not be opened with this robot's data key (sealed with another): they are absent; give the robot the key they were sealed with (--secret-key-file), or set them again",
                    lost.join(", ")
                ),
            );
        }
        {
            let mut inner = svc.lock();
            inner.state = record.state;
            inner.secrets = record.secrets;
            inner.unvalidated = true;
            if template.uid.to_string() != record.template_uid {
                inner.moving_from = exact
                    .as_ref()
                    .map(|u| (record.template_uid.clone(), u.version.clone()));
            }
        }
        report.waiting_tasks += tasks.len();
        for mut t in tasks {
            t.state = TaskState::New;
            let priority = t.priority;
            let task = Task::new(t, Arc::downgrade(&svc));
            svc.lock().queue.push(priority, task);
        }
        {
            let mut s = self.services_mut();
            s.by_name.insert(svc.name.clone(), svc.guid);
            s.insert(&svc);
        }
        Some(svc)
    }

    /// Runs `validate` on each restored service, then lets it run its tasks.
    /// The services with waiting tasks go first; one a task was scheduled
    /// on meanwhile was validated then, and is skipped.
    fn validate_all(&self, services: Vec<Arc<Service>>) {
        let robot = self.clone();
        let (busy, quiet): (Vec<_>, Vec<_>) = services.into_iter().partition(|s| s.queue_len() > 0);
        self.spawn_owned(async move {
            for svc in busy.into_iter().chain(quiet) {
                robot.observe(|o| o.service_added(&svc));
                let unvalidated = std::mem::take(&mut svc.lock().unvalidated);
                if unvalidated {
                    robot.validate_restored(svc).await;
                }
            }
        });
    }

    pub(super) async fn validate_restored(&self, svc: Arc<Service>) {
        let template = svc.template();
        let moving = svc.lock().moving_from.take();
        if let Some((stored, version)) = moving {
            // Its own version is gone: it moves to the one it runs on now, as
            // a checkout would move it (the move runs `validate`).
            self.move_restored(svc, &stored, &version, &template).await;
            return;
        }
        if template.has_hook(Hook::Validate) {
            if let Err(message) = self.run_hook(&svc, Hook::Validate, Value::Null).await {
                svc.lock().status = ServiceStatus::Invalid(message.clone());
                svc.log(
                    LogLevel::Error,
                    format!("validate failed, no task runs until it passes: {message}"),
                );
                let robot = self.clone();
                self.spawn_owned(async move { robot.retry_validate(svc).await });
                return;
            }
        }
        self.mark_valid(&svc);
    }

    /// Moves a restored service stored on `stored` (no longer loaded) to
    /// `target`. If the move fails it runs no task: its data are those of a
    /// version whose code is gone.
    async fn move_restored(
        &self,
        svc: Arc<Service>,
        stored: &str,
        version: &semver::Version,
        target: &Arc<crate::template::Template>,
    ) {
        match self.migrate(&svc, version, target).await {
            Ok(()) => {
                svc.state_delete("upgrade", None);
                self.0.events.publish(
                    &svc,
                    crate::events::What::ServiceUpgraded {
                        from: stored.to_owned(),
                        to: target.uid_text.clone(),
                    },
                );
                svc.log(
                    LogLevel::Info,
                    format!("moved from {stored} (no longer loaded) to {}", target.uid),
                );
                if let Err(e) = self.save_state(&svc).await {
                    tracing::warn!(service = %svc.name, "the state after a move is not stored: {e}");
                }
                self.mark_valid(&svc);
            }
            Err(why) => {
                let message = format!(
                    "{stored} is no longer loaded and moving to {} failed: {why}; no task runs until a version it can move to is loaded (fix the template, check it out, restart)",
                    target.uid
                );
                svc.state_set("upgrade", &target.uid.version.to_string(), TagState::Error);
                svc.lock().status = ServiceStatus::Invalid(message.clone());
                svc.log(LogLevel::Error, message.clone());
                tracing::error!(service = %svc.name, "{message}");
                if let Err(e) = self.save_state(&svc).await {
                    tracing::warn!(service = %svc.name, "the state after a move is not stored: {e}");
                }
            }
        }
    }

    fn mark_valid(&self, svc: &Arc<Service>) {
        {
            let mut inner = svc.lock();
            if inner.status == ServiceStatus::Deleting {
                return;
            }
            inner.status = ServiceStatus::Ok;
        }
        self.start_recurring(svc);
        self.kick(svc);
    }

    /// Retries `validate` with a growing pause (1 s up to 5 min) until it
    /// passes or the service is deleted.
    async fn retry_validate(&self, svc: Arc<Service>) {
        let mut pause = Duration::from_secs(1);
        loop {
            tokio::time::sleep(pause).await;
            if self.service(svc.guid).is_none() || svc.status() == ServiceStatus::Deleting {
                return;
            }
            match self.run_hook(&svc, Hook::Validate, Value::Null).await {
                Ok(()) => {
                    svc.log(LogLevel::Info, "validate passed; running tasks again");
                    self.mark_valid(&svc);
                    return;
                }
                Err(message) => {
                    svc.lock().status = ServiceStatus::Invalid(message);
                    pause = (pause * 2).min(Duration::from_secs(300));
                }
            }
        }
    }

    /// Tries again the services whose template was missing.
    pub(super) async fn restore_missing(&self) {
        let pending =
            std::mem::take(&mut *self.0.missing.lock().unwrap_or_else(|e| e.into_inner()));
        let mut report = RestoreReport::default();
        let mut revived = Vec::new();
        for (record, tasks) in pending {
            if let Some(svc) = self.revive(record, tasks, &mut report) {
                revived.push(svc);
            }
        }
        self.validate_all(revived);
    }
}
