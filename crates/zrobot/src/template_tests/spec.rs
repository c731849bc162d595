//! The format of a template test file (`templates/<name>/tests/*.yaml`), as
//! `docs/templates.md` ("Testing a template") describes it, parsed with the
//! line of every test and step kept for the messages.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

/// One test file: tests, and what every one of them starts with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Services made before each test's own, in order.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Other robots, stubbed, for each test (a test's own replace them by name).
    #[serde(default)]
    pub robots: BTreeMap<String, StubRobot>,
    pub tests: Vec<Spanned<TestSpec>>,
}

/// One test: it runs in a robot of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    pub name: String,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub robots: BTreeMap<String, StubRobot>,
    pub steps: Vec<Spanned<Step>>,
}

/// A service to make: of a template of the repository under test, or of a
/// stubbed robot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub template: String,
    pub name: String,
    #[serde(default = "empty_object")]
    pub data: Value,
    #[serde(default)]
    pub public: bool,
}

/// One step: run an action, make a service, or delete one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The service an action runs on.
    pub service: Option<String>,
    pub action: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub args: Option<Value>,
    pub create: Option<ServiceSpec>,
    pub delete: Option<String>,
    /// Seconds the step may take, waits for what it scheduled included.
    pub timeout: Option<f64>,
    #[serde(default)]
    pub expect: Expect,
}

/// What a step checks once it and everything it scheduled have ended.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The action's result; `null` included.
    #[serde(default, deserialize_with = "present")]
    pub result: Option<Value>,
    /// How the step fails: a part of the message, or `{message, category}`.
    /// Without it, the step must succeed.
    #[serde(default, deserialize_with = "present")]
    pub error: Option<Value>,
    /// The service's data after the step.
    pub data: Option<Value>,
    /// The service's state table after the step: `{category: {tag: state}}`.
    pub state: Option<Value>,
    /// Every task run while the step ran, but the step's own: on the other
    /// services of this robot and of the stubbed robots.
    pub scheduled: Option<Vec<ScheduledSpec>>,
    /// Parts of lines the step's action logged.
    #[serde(default)]
    pub log: Vec<String>,
    /// Data and state of other services after the step, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceExpect>,
}

/// The data and state of another service after a step.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceExpect {
    pub data: Option<Value>,
    pub state: Option<Value>,
}

/// A task a step is expected to have caused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledSpec {
    pub service: String,
    pub action: String,
    /// Matched like a result; left out, any arguments.
    pub args: Option<Value>,
    /// The stubbed robot it ran on; left out, this robot.
    pub robot: Option<String>,
    /// `ok` or `error`; left out, either.
    pub state: Option<String>,
}

/// Another robot, stubbed: services that answer as declared.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StubRobot {
    #[serde(default)]
    pub services: Vec<StubService>,
    /// Answers of services made there by the code under test
    /// (`find_or_create`), by template name.
    #[serde(default)]
    pub templates: BTreeMap<String, StubTemplate>,
}

/// A service of a stubbed robot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StubService {
    pub template: String,
    pub name: String,
    #[serde(default = "empty_object")]
    pub data: Value,
    /// Its state table: `{category: {tag: state}}`.
    #[serde(default)]
    pub state: BTreeMap<String, BTreeMap<String, String>>,
    /// Its answers, by action: see [`Answer`].
    #[serde(default)]
    pub actions: BTreeMap<String, Value>,
}

/// Answers of a stubbed template's services, by action.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StubTemplate {
    #[serde(default)]
    pub actions: BTreeMap<String, Value>,
}

/// One answer of a stubbed action: the first whose `when` the arguments
/// match is given.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Value>,
    #[serde(default)]
    pub result: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Answer {
    /// An action's answers as written: one answer, or a list tried in order.
    pub fn list(written: &Value, at: &str) -> Result<Vec<Answer>, String> {
        let items = match written {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let answer: Answer = serde_json::from_value(item).map_err(|e| {
                    format!("{at}[{i}]: {e}; an answer is `{{result: VALUE}}` or `{{error: MESSAGE}}`, with an optional `when: ARGS`")
                })?;
                if answer.error.is_some() && !answer.result.is_null() {
                    return Err(format!(
                        "{at}[{i}]: an answer gives a `result` or an `error`, not both"
                    ));
                }
                Ok(answer)
            })
            .collect()
    }
}

/// What a step does, once checked.
pub enum StepKind<'a> {
    Action {
        service: &'a str,
        action: &'a str,
        args: Value,
    },
    Create(&'a ServiceSpec),
    Delete(&'a str),
}

impl Step {
    /// What the step does, or why it is not one step.
    pub fn kind(&self) -> Result<StepKind<'_>, String> {
        let named = [
            self.action.is_some(),
            self.create.is_some(),
            self.delete.is_some(),
        ];
        if named.iter().filter(|n| **n).count() != 1 {
            return Err(
                "a step does one thing: `action` (with `service`), `create` or `delete`".into(),
            );
        }
        if let Some(action) = &self.action {
            let Some(service) = &self.service else {
                return Err(format!(
                    "the step runs `{action}` but names no `service` to run it on"
                ));
            };
            let args = self.args.clone().unwrap_or_else(empty_object);
            return Ok(StepKind::Action {
                service,
                action,
                args,
            });
        }
        if self.service.is_some() || self.args.is_some() {
            return Err(
                "`service` and `args` belong to an `action` step, not to `create` or `delete`"
                    .into(),
            );
        }
        match (&self.create, &self.delete) {
            (Some(spec), _) => Ok(StepKind::Create(spec)),
            (_, Some(name)) => Ok(StepKind::Delete(name)),
            _ => unreachable!("one of the three is set"),
        }
    }

    /// A short name for messages: `node1.create_vm`, `create vm1`, `delete vm1`.
    pub fn label(&self) -> String {
        match self.kind() {
            Ok(StepKind::Action {
                service, action, ..
            }) => format!("{service}.{action}"),
            Ok(StepKind::Create(spec)) => format!("create {}", spec.name),
            Ok(StepKind::Delete(name)) => format!("delete {name}"),
            Err(_) => "step".into(),
        }
    }
}

pub fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Keeps a key written as `null` apart from a key left out.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}
