//! Template repositories (and the data repository) as the API reaches them,
//! on git: clone, load, remember, and move services to newer versions.

use std::sync::Arc;

use serde_json::{json, Value};
use zrobot_api::repos::{BoxFuture, RepoError, TemplateRepositories};
use zrobot_api::wire::{self, CheckoutReport, MoveOutcome, ServiceMove};
use zrobot_core::template::RepoLoad;
use zrobot_core::UpgradeReport;
use zrobot_core::{RepoId, Robot, Template, TemplateUid};
use zrobot_git::{DataRepo, TemplateRepoUrl, TemplateRepos};

/// The setting that remembers repositories added at run time.
pub const SETTING: &str = "template_repos";

pub struct GitRepos {
    pub robot: Robot,
    pub repos: TemplateRepos,
    pub data: Option<DataRepo>,
}

/// Repositories remembered in the robot's settings: `(url, ref)`.
pub fn remembered(robot: &Robot) -> Vec<(String, Option<String>)> {
    robot
        .setting(SETTING)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let url = e.get("url")?.as_str()?.to_owned();
            let branch = e.get("branch").and_then(Value::as_str).map(str::to_owned);
            Some((url, branch))
        })
        .collect()
}

/// The revision checked out at run time (PUT /templates) for the repository
/// of `url`, which then wins over the command line's: run-time changes last.
pub fn pinned_at_run_time(robot: &Robot, url: &TemplateRepoUrl) -> Option<TemplateRepoUrl> {
    let id = url.repo_id();
    remembered(robot).into_iter().find_map(|(u, branch)| {
        let parsed = TemplateRepoUrl::parse(&u).ok()?;
        if parsed.repo_id() != id || branch.as_deref() == url.reference() {
            return None;
        }
        url.with_reference(branch.as_deref()).ok()
    })
}

async fn remember(
    robot: &Robot,
    url: &TemplateRepoUrl,
    reference: Option<&str>,
) -> Result<(), RepoError> {
    let id = url.repo_id();
    let mut list: Vec<Value> = remembered(robot)
        .into_iter()
        .filter(|(u, _)| {
            TemplateRepoUrl::parse(u)
                .map(|p| p.repo_id() != id)
                .unwrap_or(true)
        })
        .map(|(u, b)| json!({"url": u, "branch": b}))
        .collect();
    let base = url
        .with_reference(None)
        .map_err(|e| RepoError::Invalid(e.to_string()))?;
    list.push(json!({"url": base.as_str(), "branch": reference}));
    robot
        .put_setting(SETTING, Value::Array(list))
        .await
        .map_err(|e| RepoError::Invalid(e.to_string()))
}

fn outcome(url: &TemplateRepoUrl, load: RepoLoad) -> Result<Vec<Arc<Template>>, RepoError> {
    for e in &load.errors {
        tracing::error!("template repository {url}: {e}");
    }
    if load.templates.is_empty() && !load.errors.is_empty() {
        let errors: Vec<String> = load.errors.iter().map(|e| e.to_string()).collect();
        return Err(RepoError::Invalid(format!(
            "template repository {url}: no template could be loaded: {}",
            errors.join("; ")
        )));
    }
    Ok(load.templates)
}

/// Fetches and checks out `url` at `reference` (or the URL's own `#ref`),
/// loads its templates, remembers the choice, and moves services to newer
/// versions: what adding and checking out have in common.
async fn fetch_and_load(
    robot: Robot,
    repos: TemplateRepos,
    parsed: TemplateRepoUrl,
    reference: Option<String>,
) -> Result<(Vec<Arc<Template>>, CheckoutReport), RepoError> {
    let loaded = fetch_and_load_only(&robot, &repos, parsed, reference).await?;
    let report = move_services(&robot, &loaded).await;
    Ok((loaded.templates, report))
}

/// A repository checked out and its templates loaded; services not moved yet.
struct Fetched {
    templates: Vec<Arc<Template>>,
    commit: String,
    repo_id: RepoId,
    reloaded: Vec<(String, String)>,
}

async fn fetch_and_load_only(
    robot: &Robot,
    repos: &TemplateRepos,
    parsed: TemplateRepoUrl,
    reference: Option<String>,
) -> Result<Fetched, RepoError> {
    let reference = reference.or_else(|| parsed.reference().map(str::to_owned));
    let parsed = parsed
        .with_reference(reference.as_deref())
        .map_err(|e| RepoError::Invalid(e.to_string()))?;
    let checkout = repos
        .clone_or_update_async(parsed.clone())
        .await
        .map_err(|e| RepoError::Invalid(e.to_string()))?;
    let mut load =
        robot.load_repository_at(&checkout.path, &checkout.repo_id, Some(&checkout.commit));
    let reloaded = std::mem::take(&mut load.reloaded);
    let templates = outcome(&parsed, load)?;
    let names: Vec<String> = templates.iter().map(|t| t.uid.to_string()).collect();
    tracing::info!(
        "template repository {parsed} at commit {}: {}",
        checkout.commit,
        names.join(", ")
    );
    remember(robot, &parsed, reference.as_deref()).await?;
    Ok(Fetched {
        templates,
        commit: checkout.commit,
        repo_id: checkout.repo_id,
        reloaded,
    })
}

/// Moves services to the newest versions after a fetch, and tells what it did.
async fn move_services(robot: &Robot, fetched: &Fetched) -> CheckoutReport {
    let upgrade = robot.upgrade_services().await;
    for (name, to, why) in &upgrade.failed {
        tracing::warn!("service {name} stays where it is: moving to {to} failed: {why}");
    }
    CheckoutReport {
        templates: fetched
            .templates
            .iter()
            .map(|t| wire::template(t))
            .collect(),
        commit: fetched.commit.clone(),
        services: moves(robot, &fetched.repo_id, upgrade, fetched.reloaded.clone()),
    }
}

/// Template repositories for template code (`robot.templates`), when the
/// operator allows it: answers once the templates are loaded, and moves
/// services afterwards, so that the calling action's own service (which
/// waits for its action to end before it moves) is never waited on.
pub struct TemplateCodeSources {
    pub repos: TemplateRepos,
}

impl zrobot_core::sources::TemplateSources for TemplateCodeSources {
    fn fetch(
        &self,
        robot: &Robot,
        url: String,
        reference: Option<String>,
        known: bool,
    ) -> zrobot_core::engine::BoxFuture<'static, Result<zrobot_core::sources::Fetched, String>>
    {
        let (robot, repos) = (robot.clone(), self.repos.clone());
        Box::pin(async move {
            let parsed = TemplateRepoUrl::parse(&url).map_err(|e| e.to_string())?;
            if known && repos.current(&parsed).is_none() {
                return Err(format!(
                    "template repository {parsed} was never added to this robot: add it first (robot.templates.add_repo)"
                ));
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let owner = robot.clone();
            owner.spawn_owned(async move {
                match fetch_and_load_only(&robot, &repos, parsed, reference).await {
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                    Ok(fetched) => {
                        let _ = tx.send(Ok(zrobot_core::sources::Fetched {
                            commit: fetched.commit.clone(),
                            templates: fetched
                                .templates
                                .iter()
                                .map(|t| t.uid.to_string())
                                .collect(),
                        }));
                        move_services(&robot, &fetched).await;
                    }
                }
            });
            rx.await
                .map_err(|_| "the robot stopped before the repository was loaded".to_owned())?
        })
    }
}

/// What the upgrade did to each service: every move and failed move, and
/// the services of the repository's templates already on the newest (their
/// code reloaded when its files changed).
fn moves(
    robot: &Robot,
    repo: &RepoId,
    upgrade: UpgradeReport,
    reloaded: Vec<(String, String)>,
) -> Vec<ServiceMove> {
    let mut out: Vec<ServiceMove> = Vec::new();
    for (service, from, to) in upgrade.moved {
        out.push(ServiceMove {
            service,
            from,
            to,
            outcome: MoveOutcome::Moved,
            why: None,
        });
    }
    for (service, to, why) in upgrade.failed {
        let from = robot
            .lookup(&service)
            .map(|s| s.template_uid())
            .unwrap_or_default();
        out.push(ServiceMove {
            service,
            from,
            to,
            outcome: MoveOutcome::Failed,
            why: Some(why),
        });
    }
    for (service, uid) in upgrade.newest {
        if TemplateUid::parse(&uid).is_some_and(|u| u.repo == *repo) {
            let outcome = if reloaded.iter().any(|(s, _)| *s == service) {
                MoveOutcome::Reloaded
            } else {
                MoveOutcome::Newest
            };
            out.push(ServiceMove {
                service,
                from: uid.clone(),
                to: uid,
                outcome,
                why: None,
            });
        }
    }
    out.sort_by(|a, b| a.service.cmp(&b.service));
    out
}

impl TemplateRepositories for GitRepos {
    fn add(
        &self,
        url: String,
        reference: Option<String>,
    ) -> BoxFuture<'static, Result<Vec<Arc<Template>>, RepoError>> {
        let robot = self.robot.clone();
        let repos = self.repos.clone();
        Box::pin(async move {
            let parsed =
                TemplateRepoUrl::parse(&url).map_err(|e| RepoError::Invalid(e.to_string()))?;
            fetch_and_load(robot, repos, parsed, reference)
                .await
                .map(|(templates, _)| templates)
        })
    }

    fn checkout(
        &self,
        url: String,
        reference: Option<String>,
    ) -> BoxFuture<'static, Result<CheckoutReport, RepoError>> {
        let robot = self.robot.clone();
        let repos = self.repos.clone();
        Box::pin(async move {
            let parsed =
                TemplateRepoUrl::parse(&url).map_err(|e| RepoError::Invalid(e.to_string()))?;
            if repos.current(&parsed).is_none() {
                let id = parsed.repo_id();
                return Err(RepoError::NotFound(format!(
                    "template repository {parsed} ({id}) was never added to this robot; add it with POST /templates"
                )));
            }
            fetch_and_load(robot, repos, parsed, reference)
                .await
                .map(|(_, report)| report)
        })
    }

    fn data_repo(&self) -> (String, Option<String>) {
        match &self.data {
            None => (String::new(), None),
            Some(d) => (
                d.url(),
                d.last_pushed().map(|t| {
                    let unix = t
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0);
                    zrobot_api::wire::iso8601(unix)
                }),
            ),
        }
    }
}
