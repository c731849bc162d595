//! The registry of services: finding them by guid, name or secret, creating
//! them (name reserved, `init` run, then durable) and deleting them.

use std::collections::HashMap;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::{NewService, Robot};
use crate::engine::{category, Hook};
use crate::error::CoreError;
use crate::events::{TaskInfo, What};
use crate::filter::ServiceFilter;
use crate::service::{LogLevel, Service, ServiceStatus};
use crate::store::{ServiceRecord, StoreOp};
use crate::task::{Eco, Priority, Task, TaskState};
use crate::template::Template;

#[derive(Default)]
pub(super) struct Services {
    pub(super) by_guid: HashMap<Uuid, Arc<Service>>,
    /// Names of listed services, and of services being created (reserved).
    pub(super) by_name: HashMap<String, Uuid>,
    /// The service each secret hash grants, so that a presented secret is
    /// found in one lookup rather than compared with every service's.
    pub(super) by_secret: HashMap<String, Uuid>,
}

impl Services {
    pub(super) fn insert(&mut self, svc: &Arc<Service>) {
        for hash in svc.secret_hashes() {
            self.by_secret.insert(hash, svc.guid);
        }
        self.by_guid.insert(svc.guid, svc.clone());
    }

    pub(super) fn remove(&mut self, svc: &Service) {
        self.by_guid.remove(&svc.guid);
        self.by_name.remove(&svc.name);
        for hash in svc.secret_hashes() {
            if self.by_secret.get(&hash) == Some(&svc.guid) {
                self.by_secret.remove(&hash);
            }
        }
    }
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().all(|c| c == '.')
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Frees a reserved name unless the creation went through.
pub(super) struct NameReservation<'a> {
    robot: &'a Robot,
    name: String,
    kept: bool,
}

impl Drop for NameReservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.robot.services_mut().by_name.remove(&self.name);
        }
    }
}

/// What [`Robot::delete_service`] could not do before the service went.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeleteReport {
    /// `(action, why)`: the `on_delete` actions that failed, in order.
    pub on_delete_failed: Vec<(String, String)>,
}

impl Robot {
    pub(super) fn services(&self) -> std::sync::RwLockReadGuard<'_, Services> {
        self.0.services.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn services_mut(&self) -> std::sync::RwLockWriteGuard<'_, Services> {
        self.0.services.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The service with this guid.
    pub fn service(&self, guid: Uuid) -> Option<Arc<Service>> {
        self.services().by_guid.get(&guid).cloned()
    }

    /// The service with this name.
    pub fn service_by_name(&self, name: &str) -> Option<Arc<Service>> {
        let s = self.services();
        s.by_name.get(name).and_then(|g| s.by_guid.get(g)).cloned()
    }

    /// The service a secret grants, by the secret's hash (as stored). One
    /// map lookup: the cost of a presented secret does not grow with the
    /// number of services.
    pub fn service_by_secret_hash(&self, hash: &str) -> Option<Arc<Service>> {
        let s = self.services();
        s.by_secret
            .get(hash)
            .and_then(|g| s.by_guid.get(g))
            .cloned()
    }

    /// A service named by its guid or its name.
    pub fn lookup(&self, name_or_guid: &str) -> Option<Arc<Service>> {
        Uuid::parse_str(name_or_guid)
            .ok()
            .and_then(|g| self.service(g))
            .or_else(|| self.service_by_name(name_or_guid))
    }

    /// The services matching `filter`, sorted by name.
    pub fn find_services(&self, filter: &ServiceFilter) -> Vec<Arc<Service>> {
        let mut found: Vec<Arc<Service>> = match (&filter.name, &filter.guid) {
            (Some(n), _) => self.service_by_name(n).into_iter().collect(),
            (None, Some(g)) => Uuid::parse_str(g)
                .ok()
                .and_then(|g| self.service(g))
                .into_iter()
                .collect(),
            (None, None) => self.services().by_guid.values().cloned().collect(),
        };
        found.retain(|s| filter.matches(s));
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    pub fn service_count(&self) -> usize {
        self.services().by_guid.len()
    }

    /// Creates a service: checks its data, runs `init` then `validate`, makes it
    /// durable, then lists it. On any failure nothing of it remains.
    pub async fn create_service(&self, req: NewService) -> Result<Arc<Service>, CoreError> {
        if !valid_name(&req.name) {
            return Err(CoreError::InvalidName(req.name));
        }
        let template = self.0.templates.resolve(&req.template)?;
        let data = template.prepare_data(req.data)?;
        let guid = Uuid::new_v4();
        {
            let mut s = self.services_mut();
            if s.by_name.contains_key(&req.name) {
                return Err(CoreError::NameTaken(req.name));
            }
            s.by_name.insert(req.name.clone(), guid);
        }
        let mut reservation = NameReservation {
            robot: self,
            name: req.name.clone(),
            kept: false,
        };
        let svc = Arc::new(Service::new(
            guid,
            req.name.clone(),
            template.clone(),
            data,
            req.public,
            crate::time::now(),
            ServiceStatus::Creating,
            self.0.events.clone(),
        ));
        svc.set_secret_hashes(req.secrets);
        for hook in [Hook::Init, Hook::Validate] {
            if template.has_hook(hook) {
                self.run_hook(&svc, hook, Value::Null)
                    .await
                    .map_err(|message| CoreError::HookFailed {
                        hook: hook.name().to_owned(),
                        service: req.name.clone(),
                        message,
                    })?;
            }
        }
        // Tasks the hooks scheduled become durable with the service itself.
        let mut ops = vec![StoreOp::PutService(self.service_record(&svc))];
        ops.extend(
            svc.waiting_tasks()
                .iter()
                .map(|t| StoreOp::PutTask(t.record())),
        );
        svc.lock().state_dirty = false;
        self.0.store.commit(ops).await?;
        self.services_mut().insert(&svc);
        reservation.kept = true;
        svc.lock().status = ServiceStatus::Ok;
        self.0.events.publish(&svc, What::ServiceCreated);
        svc.log(
            LogLevel::Info,
            format!("created from template {}", template.uid),
        );
        self.start_recurring(&svc);
        self.kick(&svc);
        Ok(svc)
    }

    /// The service as the store keeps it: its secret data fields sealed.
    pub fn service_record(&self, svc: &Service) -> ServiceRecord {
        let template = svc.template();
        let inner = svc.lock();
        ServiceRecord {
            guid: svc.guid,
            name: svc.name.clone(),
            template_uid: template.uid_text.clone(),
            public: svc.public,
            data: (*self.stored_data(&template, &inner.data)).clone(),
            state: inner.state.clone(),
            secrets: inner.secrets.clone(),
            created: svc.created,
        }
    }

    /// Deletes a service: drops its waiting tasks, lets the running one finish
    /// (within a bound), runs its `on_delete` actions in order (each within a
    /// bound), then removes it. The service is gone even if an `on_delete`
    /// action failed: the report says which, and why.
    pub async fn delete_service(&self, guid: Uuid) -> Result<DeleteReport, CoreError> {
        let svc = self
            .service(guid)
            .ok_or_else(|| CoreError::ServiceNotFound(guid.to_string()))?;
        self.stop_taking_tasks(&svc)?;
        if !self
            .wait_idle(&svc, self.0.config.delete_running_bound)
            .await
        {
            svc.stop_running.notify_waiters();
            self.wait_idle(&svc, Duration::from_secs(5)).await;
        }
        let template = svc.template();
        let mut report = DeleteReport::default();
        for action in &template.manifest.on_delete {
            if let Some(why) = self.run_on_delete(&svc, &template, action).await {
                // The service's log goes with it: the robot's log keeps why.
                tracing::warn!(service = %svc.name, %action, why = %why, "on_delete action failed; deleting anyway");
                report.on_delete_failed.push((action.clone(), why));
            }
        }
        if let Err(e) = self
            .0
            .store
            .commit(vec![StoreOp::DeleteService(svc.guid)])
            .await
        {
            svc.lock().status = ServiceStatus::Ok;
            return Err(CoreError::Storage(e));
        }
        {
            self.services_mut().remove(&svc);
        }
        tracing::info!(service = %svc.name, guid = %svc.guid, "service deleted");
        self.observe(|o| o.service_deleted(&svc));
        self.0.events.publish(&svc, What::ServiceDeleted);
        Ok(report)
    }

    /// Removes a tag (or a whole category, without `tag`) from a service's
    /// state table and stores the table at once; false if nothing was set.
    pub async fn clear_state(
        &self,
        svc: &Arc<Service>,
        category: &str,
        tag: Option<&str>,
    ) -> Result<bool, CoreError> {
        if svc.state_get(category, tag).is_empty() {
            return Ok(false);
        }
        svc.state_delete(category, tag);
        self.save_state(svc).await?;
        Ok(true)
    }

    /// Stores a service's state table if it changed since it was last
    /// stored (a task's end stores it too).
    pub async fn save_state(&self, svc: &Arc<Service>) -> Result<(), CoreError> {
        if let Some(state) = svc.take_dirty_state() {
            self.0
                .store
                .commit(vec![StoreOp::SaveState {
                    service: svc.guid,
                    state,
                }])
                .await
                .map_err(CoreError::Storage)?;
        }
        Ok(())
    }

    /// Marks `svc` deleting, so that it takes no new task, and ends its
    /// waiting tasks in `error`; refused if a deletion already runs.
    fn stop_taking_tasks(&self, svc: &Arc<Service>) -> Result<(), CoreError> {
        let dropped = {
            let mut inner = svc.lock();
            if inner.status == ServiceStatus::Deleting {
                return Err(CoreError::ServiceDeleting(svc.name.clone()));
            }
            inner.status = ServiceStatus::Deleting;
            inner.queue.drain()
        };
        svc.log(LogLevel::Info, "deleting");
        let now = crate::time::now();
        for t in dropped {
            let mut r = t.record();
            r.state = TaskState::Error;
            r.eco = Some(Eco {
                category: category::SERVICE_DELETED.to_owned(),
                message: format!("service `{}` was deleted before the task ran", svc.name),
                trace: String::new(),
                count: 1,
                time_first: now,
                time_last: now,
            });
            let info = TaskInfo::of(&r);
            t.finish_then(r, || self.0.events.publish(svc, What::TaskFinished(info)));
        }
        Ok(())
    }

    /// Runs one `on_delete` action of a service being deleted, bounded; a
    /// failure is logged, said (`Some(why)`), and the deletion goes on.
    async fn run_on_delete(
        &self,
        svc: &Arc<Service>,
        template: &Template,
        action: &str,
    ) -> Option<String> {
        let record = self.new_record(
            svc,
            template,
            action,
            Value::Object(Default::default()),
            Priority::System,
        );
        let task = Task::new(record, Arc::downgrade(svc));
        svc.lock().current = Some(task.clone());
        let bound = self.0.config.on_delete_bound;
        let (robot, of, running) = (self.clone(), svc.clone(), task.clone());
        let run = tokio::time::timeout(
            bound,
            self.on_template_runtime(async move { robot.run_task_to_end(&of, &running).await }),
        )
        .await;
        svc.lock().current = None;
        let why = match (run, task.state()) {
            (Ok(Err(e)), _) => format!("it did not finish: {e}"),
            (Err(_), _) => format!("it ran past {}s and was stopped", bound.as_secs_f64()),
            (Ok(Ok(())), TaskState::Error) => task.record().eco.map_or_else(
                || "it failed".to_owned(),
                |e| format!("{}: {}", e.category, e.message),
            ),
            _ => return None,
        };
        svc.log(
            LogLevel::Error,
            format!("on_delete action `{action}` failed: {why}"),
        );
        Some(why)
    }

    /// Waits until no task of `svc` runs; false if `bound` passed first.
    pub(super) async fn wait_idle(&self, svc: &Service, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let idle = svc.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            {
                let inner = svc.lock();
                if !inner.driving && inner.current.is_none() && inner.finishing.is_empty() {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return false;
            }
        }
    }
}
