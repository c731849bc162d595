//! Stubbed robots of a template test: real robots, served on loopback by the
//! real API, whose services answer as the test file declares. The code
//! under test reaches them through `robot.robots[name]` exactly as it
//! reaches a robot in production; only the answers are made up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use zrobot_core::engine::{
    ActionCall, ActionError, ActionOutcome, BoxFuture, Engine, Hook, TemplateCode, TemplateSource,
};
use zrobot_core::robot::NewService;
use zrobot_core::store::MemoryStore;
use zrobot_core::{RepoId, Robot, RobotConfig, TagState, TemplateError};

use super::matching;
use super::spec::{Answer, StubRobot};

/// The file of a stubbed template that holds its answers.
const ANSWERS_FILE: &str = "answers.json";

/// A stubbed template's answers: by service name first, then for any
/// service of the template.
#[derive(Default, Serialize, Deserialize)]
struct Answers {
    services: BTreeMap<String, BTreeMap<String, Vec<Answer>>>,
    template: BTreeMap<String, Vec<Answer>>,
}

/// Runs no code: each action gives the first declared answer whose `when`
/// its arguments match.
struct StubEngine;

impl Engine for StubEngine {
    fn code_file(&self, _template_name: &str) -> String {
        ANSWERS_FILE.into()
    }

    fn compile(&self, source: &TemplateSource) -> Result<Arc<dyn TemplateCode>, TemplateError> {
        let text = std::fs::read_to_string(&source.code_path)
            .map_err(|e| TemplateError::new(&source.code_path, None, e.to_string()))?;
        let answers: Answers = serde_json::from_str(&text)
            .map_err(|e| TemplateError::new(&source.code_path, None, e.to_string()))?;
        let mut actions: Vec<String> = answers
            .template
            .keys()
            .chain(answers.services.values().flat_map(|a| a.keys()))
            .cloned()
            .collect();
        actions.sort();
        actions.dedup();
        Ok(Arc::new(StubCode {
            template: source.uid.name.clone(),
            answers,
            actions,
        }))
    }
}

struct StubCode {
    template: String,
    answers: Answers,
    actions: Vec<String>,
}

impl TemplateCode for StubCode {
    fn actions(&self) -> &[String] {
        &self.actions
    }

    fn has_hook(&self, _hook: Hook) -> bool {
        false
    }

    fn run(&self, call: ActionCall) -> BoxFuture<'static, ActionOutcome> {
        let action = call.callable.name().to_owned();
        let service = call.service.name.clone();
        let declared = self
            .answers
            .services
            .get(&service)
            .and_then(|a| a.get(&action))
            .or_else(|| self.answers.template.get(&action));
        let result = match declared
            .and_then(|answers| answers.iter().find(|a| a.when.as_ref().is_none_or(|w| matching::matches(w, &call.args))))
        {
            Some(Answer {
                error: Some(message),
                ..
            }) => Err(ActionError::new("stub.error", message.clone())),
            Some(answer) => Ok(answer.result.clone()),
            None => Err(ActionError::new(
                "stub.unanswered",
                format!(
                    "the stub has no answer for {service}.{action} with arguments {}: declare one (with a `when` these arguments match, or none) under its `actions` or under `templates: {{{}: {{actions: ...}}}}`",
                    matching::show(&call.args),
                    self.template
                ),
            )),
        };
        Box::pin(async move { ActionOutcome { result, data: None } })
    }
}

/// A stubbed robot being served.
pub struct Stub {
    pub robot: Robot,
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _repo: tempfile::TempDir,
}

impl Stub {
    /// Makes the robot `name` of `spec` (its templates written into a temp
    /// folder), creates its services and serves it on 127.0.0.1.
    pub async fn start(name: &str, spec: &StubRobot) -> Result<Stub, String> {
        let at = format!("robots.{name}");
        let mut templates: BTreeMap<&str, Answers> = BTreeMap::new();
        for (template, t) in &spec.templates {
            let answers = templates.entry(template).or_default();
            for (action, written) in &t.actions {
                let path = format!("{at}.templates.{template}.actions.{action}");
                answers
                    .template
                    .insert(action.clone(), Answer::list(written, &path)?);
            }
        }
        for (i, s) in spec.services.iter().enumerate() {
            let answers = templates.entry(&s.template).or_default();
            let own = answers.services.entry(s.name.clone()).or_default();
            for (action, written) in &s.actions {
                let path = format!("{at}.services[{i}].actions.{action}");
                own.insert(action.clone(), Answer::list(written, &path)?);
            }
        }
        let repo = tempfile::tempdir().map_err(|e| format!("cannot make a temp folder: {e}"))?;
        for (template, answers) in &templates {
            write_template(repo.path(), template, answers)
                .map_err(|e| format!("{at}: cannot write the stub of `{template}`: {e}"))?;
        }
        let robot = Robot::new(
            RobotConfig {
                recurring: false,
                ..RobotConfig::default()
            },
            Arc::new(StubEngine),
            Arc::new(MemoryStore::new()),
        );
        let load = robot.load_repository(repo.path(), &RepoId::new("stub", "zrobot", name));
        if let Some(e) = load.errors.first() {
            return Err(format!("{at}: a stubbed template does not load: {e}"));
        }
        for (i, s) in spec.services.iter().enumerate() {
            let svc = robot
                .create_service(NewService {
                    template: s.template.clone(),
                    name: s.name.clone(),
                    data: s.data.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("{at}.services[{i}]: cannot make `{}`: {e}", s.name))?;
            for (category, tags) in &s.state {
                for (tag, state) in tags {
                    let state = TagState::parse(state).ok_or_else(|| {
                        format!("{at}.services[{i}].state.{category}.{tag}: `{state}` is not a state: ok, error, warning or skipped")
                    })?;
                    svc.state_set(category, tag, state);
                }
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("{at}: cannot listen on loopback: {e}"))?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(zrobot_api::serve(
            listener,
            robot.clone(),
            zrobot_api::ApiConfig::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Stub {
            robot,
            url,
            stop: Some(stop),
            server: Some(server),
            _repo: repo,
        })
    }

    /// Stops serving and the robot. The test is over: connections the
    /// robot under test keeps open are cut, not waited for.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
        self.robot
            .shutdown(Duration::from_secs(1), Duration::from_secs(1))
            .await;
    }
}

fn write_template(repo: &Path, template: &str, answers: &Answers) -> std::io::Result<()> {
    let dir = repo.join("templates").join(template);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("template.yaml"),
        "version: 0.0.0\ndescription: a stub of a template test\n",
    )?;
    std::fs::write(dir.join(ANSWERS_FILE), serde_json::to_vec(answers)?)
}
