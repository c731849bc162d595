//! Executing a blueprint, all or nothing: everything is checked before
//! anything is made; if creating or scheduling still fails, every service the
//! blueprint created is deleted again and its tasks are cancelled.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::{NewService, Robot};
use crate::blueprint::{Blueprint, BlueprintError, Problems};
use crate::engine::Hook;
use crate::service::Service;
use crate::store::StoreOp;
use crate::task::Task;
use crate::template::Template;

/// What the caller is allowed, and how new services get their secret.
pub struct BlueprintCaller<'a> {
    /// Whether the caller may manage (update, schedule on) an existing service.
    pub may_manage: &'a (dyn Fn(&Service) -> bool + Send + Sync),
    /// Makes a new secret: `(secret, hash to store)`.
    pub new_secret: &'a (dyn Fn() -> (String, String) + Send + Sync),
}

/// What a blueprint did.
#[derive(Debug, Default)]
pub struct BlueprintOutcome {
    /// Services created, with the secret that grants each.
    pub created: Vec<(Arc<Service>, String)>,
    /// Existing services that received new data.
    pub updated: Vec<Arc<Service>>,
    /// Tasks scheduled, in blueprint order.
    pub tasks: Vec<Arc<Task>>,
}

/// A service the blueprint will touch: existing, or about to be created.
struct Target {
    name: String,
    template: Arc<Template>,
    existing: Option<Arc<Service>>,
}

impl Robot {
    /// Executes `bp`. On error nothing it created remains, and the error names
    /// the block at fault.
    pub async fn execute_blueprint(
        &self,
        bp: &Blueprint,
        caller: &BlueprintCaller<'_>,
    ) -> Result<BlueprintOutcome, BlueprintError> {
        // Everything is checked before anything changes.
        let (entries, listed) = self.check_entries(bp, caller)?;
        let plan = self.plan_actions(bp, caller, &entries, &listed)?;
        let mut outcome = self.apply_entries(bp, caller, &entries).await?;
        self.schedule_plan(bp, plan, &mut outcome).await?;
        Ok(outcome)
    }

    /// Checks every service entry: its template, its name, its data, and
    /// that an existing service of that name is the caller's to manage.
    /// Also returns the entries by name.
    #[allow(clippy::type_complexity)]
    fn check_entries<'b>(
        &self,
        bp: &'b Blueprint,
        caller: &BlueprintCaller<'_>,
    ) -> Result<(Vec<(Target, Value)>, HashMap<&'b str, usize>), BlueprintError> {
        let mut entries: Vec<(Target, Value)> = Vec::new();
        // Entries by name, so that nothing here costs more as the blueprint
        // or the robot grows: a blueprint of 1,000 services costs the same in
        // a robot of 1,000,000 as in an empty one.
        let mut listed: HashMap<&str, usize> = HashMap::new();
        let mut problems = Problems::default();
        for e in &bp.services {
            let template = match self.templates().resolve(&e.template) {
                Ok(t) => t,
                Err(err) => {
                    problems.push(BlueprintError::new(&e.block, err.to_string()));
                    continue;
                }
            };
            if listed.insert(e.name.as_str(), entries.len()).is_some() {
                problems.push(BlueprintError::new(
                    &e.block,
                    format!("service `{}` is listed twice", e.name),
                ));
                continue;
            }
            let existing = self.service_by_name(&e.name);
            if let Some(svc) = &existing {
                let have = svc.template();
                if have.uid.repo != template.uid.repo || have.uid.name != template.uid.name {
                    problems.push(BlueprintError::new(
                        &e.block,
                        format!(
                            "service `{}` exists already, from template {}",
                            e.name, have.uid
                        ),
                    ));
                } else if !(caller.may_manage)(svc) {
                    problems.push(BlueprintError::new(
                        &e.block,
                        format!("you may not manage the existing service `{}`", e.name),
                    ));
                }
            } else if !super::valid_name(&e.name) {
                problems.push(BlueprintError::new(
                    &e.block,
                    crate::CoreError::InvalidName(e.name.clone()).to_string(),
                ));
            } else if let Err(err) = template.prepare_data(e.data.clone()) {
                problems.push(BlueprintError::new(&e.block, err.to_string()));
            }
            entries.push((
                Target {
                    name: e.name.clone(),
                    template: existing.as_ref().map(|s| s.template()).unwrap_or(template),
                    existing,
                },
                e.data.clone(),
            ));
        }
        problems.into_result()?;

        Ok((entries, listed))
    }

    /// Checks every action block against the services it will reach, and
    /// returns them: `(block, target names)`.
    fn plan_actions(
        &self,
        bp: &Blueprint,
        caller: &BlueprintCaller<'_>,
        entries: &[(Target, Value)],
        listed: &HashMap<&str, usize>,
    ) -> Result<Vec<(usize, Vec<String>)>, BlueprintError> {
        let mut plan: Vec<(usize, Vec<String>)> = Vec::new(); // (block, target names)
                                                              // The robot's other services the caller may manage, listed only for
                                                              // a block that names no service (it reaches every match, so its cost
                                                              // is the robot's size); a block naming one looks it up.
        let mut others: Option<Vec<Arc<Service>>> = None;
        let mut problems = Problems::default();
        for (bi, block) in bp.actions.iter().enumerate() {
            let template_ref: Option<Vec<&str>> = block
                .template
                .as_deref()
                .map(|t| t.trim_matches('/').split('/').collect());
            let mut names = Vec::new();
            let candidates: Vec<(String, Arc<Template>)> = match &block.service {
                Some(name) => match listed.get(name.as_str()) {
                    Some(&i) => vec![(name.clone(), entries[i].0.template.clone())],
                    None => self
                        .service_by_name(name)
                        .filter(|s| (caller.may_manage)(s))
                        .map(|s| (s.name.clone(), s.template()))
                        .into_iter()
                        .collect(),
                },
                None => {
                    let others = others.get_or_insert_with(|| {
                        self.find_services(&Default::default())
                            .into_iter()
                            .filter(|s| {
                                !listed.contains_key(s.name.as_str()) && (caller.may_manage)(s)
                            })
                            .collect()
                    });
                    entries
                        .iter()
                        .map(|(t, _)| (t.name.clone(), t.template.clone()))
                        .chain(others.iter().map(|s| (s.name.clone(), s.template())))
                        .collect()
                }
            };
            let mut refused = false;
            for (name, template) in candidates {
                if template_ref
                    .as_ref()
                    .is_some_and(|r| !template.uid.matches(r))
                {
                    continue;
                }
                for action in &block.actions {
                    if let Err(err) = template.prepare_args(action, block.args.clone()) {
                        problems.push(BlueprintError::new(
                            &block.block,
                            format!("service `{name}`: {err}"),
                        ));
                        refused = true;
                    }
                }
                names.push(name);
            }
            if names.is_empty() {
                problems.push(BlueprintError::new(
                    &block.block,
                    "matches no service you may manage; check its `service` and `template` filters",
                ));
            } else if !refused {
                plan.push((bi, names));
            }
        }
        problems.into_result()?;

        Ok(plan)
    }

    /// Creates and updates the entries' services, in order; on a failure,
    /// what was created goes again.
    async fn apply_entries(
        &self,
        bp: &Blueprint,
        caller: &BlueprintCaller<'_>,
        entries: &[(Target, Value)],
    ) -> Result<BlueprintOutcome, BlueprintError> {
        let mut outcome = BlueprintOutcome::default();
        for ((target, data), e) in entries.iter().zip(&bp.services) {
            let done = match &target.existing {
                Some(svc) => self.update_data(svc, data.clone()).await.map(|_| {
                    outcome.updated.push(svc.clone());
                }),
                None => {
                    let (secret, hash) = (caller.new_secret)();
                    self.create_service(NewService {
                        template: target.template.uid.to_string(),
                        name: target.name.clone(),
                        data: data.clone(),
                        public: false,
                        secrets: vec![hash],
                    })
                    .await
                    .map(|svc| outcome.created.push((svc, secret)))
                    .map_err(|err| err.to_string())
                }
            };
            if let Err(message) = done {
                self.roll_back(&outcome).await;
                return Err(BlueprintError::new(&e.block, message));
            }
        }

        Ok(outcome)
    }

    /// Schedules the planned actions; on a failure, what the blueprint
    /// created goes again.
    async fn schedule_plan(
        &self,
        bp: &Blueprint,
        plan: Vec<(usize, Vec<String>)>,
        outcome: &mut BlueprintOutcome,
    ) -> Result<(), BlueprintError> {
        for (bi, names) in plan {
            let block = &bp.actions[bi];
            for name in names {
                let Some(svc) = self.service_by_name(&name) else {
                    self.roll_back(outcome).await;
                    return Err(BlueprintError::new(
                        &block.block,
                        format!("service `{name}` went away"),
                    ));
                };
                for action in &block.actions {
                    match self.schedule(&svc, action, block.args.clone()).await {
                        Ok(t) => outcome.tasks.push(t),
                        Err(err) => {
                            self.roll_back(outcome).await;
                            return Err(BlueprintError::new(
                                &block.block,
                                format!("service `{name}`: {err}"),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands new data to an existing service through its `update_data` hook
    /// (without one, the data is left as it is, as 0-robot did).
    pub async fn update_data(&self, svc: &Arc<Service>, new_data: Value) -> Result<(), String> {
        let template = svc.template();
        if !template.has_hook(Hook::UpdateData) {
            return Ok(());
        }
        self.pause(svc, "taking new data", self.0.config.delete_running_bound)
            .await
            .map_err(|e| e.to_string())?;
        let result = async {
            let data = self
                .run_hook_on(&template, svc, Hook::UpdateData, new_data)
                .await?;
            if let Some(d) = data {
                let d = Arc::new(d);
                self.0
                    .store
                    .commit(vec![StoreOp::SaveData {
                        service: svc.guid,
                        data: self.stored_data(&template, &d),
                    }])
                    .await
                    .map_err(|e| format!("the new data could not be stored: {e}"))?;
                svc.lock().data = d;
            }
            Ok(())
        }
        .await;
        self.resume(svc);
        result.map_err(|e: String| format!("update_data of `{}` failed: {e}", svc.name))
    }

    async fn roll_back(&self, outcome: &BlueprintOutcome) {
        for t in &outcome.tasks {
            if let Some(svc) = t.service.upgrade() {
                let _ = self.cancel_task(&svc, t.guid).await;
            }
        }
        for (svc, _) in outcome.created.iter().rev() {
            if let Err(e) = self.delete_service(svc.guid).await {
                tracing::error!(service = %svc.name, "rolling back a blueprint: cannot delete: {e}");
            }
        }
    }
}
