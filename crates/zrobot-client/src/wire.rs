//! The JSON bodies of the REST API, field for field as 0-robot named them:
//! the one definition both the server and this client use.
//!
//! Renaming a field here breaks 0-robot's clients: add fields, never rename.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Every error the API answers with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Error {
    /// The HTTP status code, repeated (0-robot did so).
    pub code: u16,
    /// What went wrong, naming the field or value at fault.
    pub message: String,
}

/// `GET /robot/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RobotInfo {
    pub repositories: Repositories,
    /// Whether the robot's last writes to its storage went through.
    pub storage_healthy: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Repositories {
    pub config: ConfigRepository,
    pub data: DataRepository,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ConfigRepository {
    /// Empty when the robot has none.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DataRepository {
    /// Empty when the robot has none.
    pub url: String,
    /// When the data was last pushed, ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pushed: Option<String>,
}

/// `GET /robot/metrics`: figures of the host the robot runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RobotMetrics {
    pub cpu: CpuMetrics,
    pub memory: MemoryMetrics,
    pub nr_services: u64,
}

/// Share of CPU time in each mode, in percent, since the previous request
/// for these figures (since boot for the first one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CpuMetrics {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
}

/// Memory of the host, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MemoryMetrics {
    pub total: u64,
    pub active: u64,
    pub free: u64,
    pub cached: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// A URL told about failed tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Webhook {
    pub id: String,
    /// Always `eco`: the webhook receives the eco of every failed task.
    pub kind: String,
    pub url: String,
    /// The body's shape: absent for the eco as JSON ([`WebhookEco`]);
    /// `slack` or `telegram` for a chat message (an addition to 0-robot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// `POST /robot/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookCreate {
    /// `eco` (the default, and the only kind there is).
    #[serde(default = "eco_kind")]
    pub kind: String,
    /// An `http://` or `https://` URL.
    pub url: String,
    /// `slack` (an incoming webhook's URL: `{"text": ...}`) or `telegram`
    /// (the Bot API's `.../bot<token>/sendMessage?chat_id=<chat>`:
    /// `{"chat_id": ..., "text": ...}`) to receive a chat message instead of
    /// the eco as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

fn eco_kind() -> String {
    "eco".to_owned()
}

/// What a webhook receives, as a POSTed JSON body, when a task fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookEco {
    /// The guid of the service whose task failed.
    pub service: Uuid,
    pub service_name: String,
    /// The template UID of the service.
    pub template: String,
    pub task_guid: Uuid,
    pub action_name: String,
    pub args: Value,
    pub eco: Eco,
}

/// A loaded template version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Template {
    /// `host/account/repository/name/version`.
    pub uid: String,
    pub host: String,
    pub account: String,
    pub repository: String,
    pub name: String,
    pub version: String,
    /// The commit of the template repository its code comes from (an
    /// addition); absent for a template not loaded from git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// `POST /templates` and `PUT /templates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TemplateRepository {
    pub url: String,
    /// A branch, tag or commit; the repository's default branch when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// `PUT /templates?report=true`: what a checkout did (an addition: without
/// `report`, 0-robot's 204 and no body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CheckoutReport {
    /// The templates the repository holds at the revision checked out.
    pub templates: Vec<Template>,
    /// The full id of the commit checked out.
    #[serde(default)]
    pub commit: String,
    /// Every service that moved or failed to, and those of the
    /// repository's templates that stayed, by name.
    pub services: Vec<ServiceMove>,
}

/// What a checkout did to one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ServiceMove {
    pub service: String,
    /// The UID of its template before.
    pub from: String,
    /// The UID it moved to, or failed to move to; `from` when it stayed.
    pub to: String,
    pub outcome: MoveOutcome,
    /// Why the move failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// How a service's move went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MoveOutcome {
    /// Now on the newer version.
    Moved,
    /// A newer version is loaded, but the move failed: still on `from`.
    Failed,
    /// Already on the newest version loaded.
    Newest,
    /// On the newest version, whose files changed without a new version:
    /// it runs the new code from its next task.
    Reloaded,
}

/// The query of `GET /services`: a service is listed when it matches every key given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ServiceFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A full template UID, or any suffix of it (`node`, `node/1.2.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<String>,
}

impl ServiceFilter {
    /// The filter as `(key, value)` query pairs.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("name", &self.name),
            ("template_uid", &self.template_uid),
            ("template_host", &self.template_host),
            ("template_account", &self.template_account),
            ("template_repo", &self.template_repo),
            ("template_name", &self.template_name),
            ("template_version", &self.template_version),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// `POST /services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceCreate {
    /// A template reference: any unambiguous suffix of its UID.
    pub template: String,
    /// Unique in the robot. Empty (or absent, or null, as 0-robot allowed):
    /// the robot makes one up, a UUID.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub name: String,
    /// Checked against the template's schema, which fills in its defaults.
    #[serde(default)]
    pub data: Value,
    /// A public service is listed to every caller.
    #[serde(default)]
    pub public: bool,
}

/// The state of one tag of a category of a service's state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TagState {
    Ok,
    Error,
    Warning,
    Skipped,
}

/// One row of a service's state table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ServiceState {
    pub category: String,
    pub tag: String,
    pub state: TagState,
}

/// A service as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Service {
    pub guid: Uuid,
    pub name: String,
    /// The UID of the service's template.
    pub template: String,
    /// The version of the service's template.
    pub version: String,
    pub state: Vec<ServiceState>,
    pub public: bool,
    /// The service's data: present only for the god token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// `POST /services` answers the service and the secret that grants it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ServiceCreated {
    #[serde(flatten)]
    pub service: Service,
    /// Send it as `ZrobotSecret: Bearer <secret>` to manage the service; the
    /// robot keeps only a hash of it, so it cannot be shown again.
    pub secret: String,
}

/// `DELETE /services/{guid}?report=true`: the service is gone; what its
/// `on_delete` actions could not do (an addition: without `report`, 0-robot's
/// 204 and no body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ServiceDeleted {
    /// The `on_delete` actions that failed, in the order they ran: what
    /// they were to undo may still exist.
    pub on_delete_failed: Vec<OnDeleteFailure>,
}

/// An `on_delete` action that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OnDeleteFailure {
    pub action: String,
    pub message: String,
}

/// An action of a service's template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Action {
    pub name: String,
    /// The names of the action's arguments, the required ones first (0-robot's
    /// `string[]`); empty when the template gives no `args:` schema.
    #[serde(default)]
    pub arguments: Vec<String>,
    /// The JSON Schema of the action's arguments, when the template gives one.
    #[serde(default)]
    pub arguments_schema: Option<Value>,
}

impl Action {
    /// The action `name` whose arguments follow `schema`: the names are its
    /// `required` ones, then its other `properties`, in order.
    pub fn new(name: String, schema: Option<Value>) -> Action {
        let mut arguments: Vec<String> = Vec::new();
        if let Some(schema) = &schema {
            let required = schema.get("required").and_then(Value::as_array);
            for r in required.into_iter().flatten().filter_map(Value::as_str) {
                arguments.push(r.to_owned());
            }
            if let Some(Value::Object(properties)) = schema.get("properties") {
                for key in properties.keys() {
                    if !arguments.contains(key) {
                        arguments.push(key.clone());
                    }
                }
            }
        }
        Action {
            name,
            arguments,
            arguments_schema: schema,
        }
    }
}

/// `POST /services/{guid}/task_list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskCreate {
    pub action_name: String,
    #[serde(default)]
    pub args: Value,
}

/// Where a task is in its life: `new -> running -> ok | error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    New,
    Running,
    Ok,
    Error,
}

impl TaskState {
    pub fn is_done(self) -> bool {
        matches!(self, TaskState::Ok | TaskState::Error)
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Task {
    pub guid: Uuid,
    pub service_guid: Uuid,
    pub service_name: String,
    /// The template's name (`node`), as 0-robot gave it.
    pub template_name: String,
    /// The full template UID (an addition).
    #[serde(default)]
    pub template_uid: String,
    pub action_name: String,
    pub args: Value,
    pub state: TaskState,
    /// When the task was scheduled: unix seconds.
    #[serde(deserialize_with = "whole_seconds")]
    pub created: i64,
    /// How long the task ran, in seconds; absent until it is done. (0-robot's
    /// RAML makes `duration`, `result` and `eco` optional numbers, strings
    /// and objects: absent, never null.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// The action's return value encoded as a JSON string (as 0-robot did);
    /// absent if the task has no result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why the task failed; absent unless it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eco: Option<Eco>,
    /// How many runs started (retries, and runs again after a restart).
    #[serde(default)]
    pub attempt: u32,
    /// The guid of the task (maybe on another robot) that scheduled this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_task: Option<String>,
    /// The W3C `traceparent` of the chain of tasks this one belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Task {
    /// The result decoded from its JSON string.
    pub fn result_value(&self) -> Option<Value> {
        self.result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
    }
}

/// An error condition: why a task failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Eco {
    /// The category (`action.error`, `action.timeout`, `task.cancelled`...).
    pub cat: String,
    /// How many runs failed.
    pub count: u32,
    pub message: String,
    /// The message that may be shown to anyone.
    pub message_pub: String,
    /// Unix seconds of the first failure.
    #[serde(deserialize_with = "whole_seconds")]
    pub time_first: i64,
    /// Unix seconds of the last failure.
    #[serde(deserialize_with = "whole_seconds")]
    pub time_last: i64,
    pub trace: String,
}

/// `GET /services/{guid}/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Logs {
    /// One line per entry: time (ISO 8601, UTC), level, then, for a line
    /// an action wrote, `[action 1a2b3c4d]` (its task's guid starts so),
    /// then the message.
    pub logs: String,
}

/// `POST /blueprints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Blueprint {
    /// The blueprint, its YAML read as a JSON object.
    pub content: Value,
}

/// What a blueprint created and scheduled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BlueprintResult {
    pub services: Vec<ServiceCreated>,
    pub tasks: Vec<Task>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Accepts unix seconds written as an integer or a float.
fn whole_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| n.as_f64().map(|f| f as i64))
        .ok_or_else(|| serde::de::Error::custom(format!("`{n}` is not a unix time in seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_reads_integer_and_float_times() {
        let t: Task = serde_json::from_value(json!({
            "guid": "07f38c46-056b-420d-8964-6efd3f493fe5",
            "service_guid": "10b0c69f-0f72-4e41-b146-4e10997024f8",
            "service_name": "node1", "template_name": "node", "action_name": "start",
            "args": {}, "state": "error", "created": 1512038654.75, "duration": 0.5,
            "result": null,
            "eco": {"cat": "action.error", "count": 1, "message": "m", "message_pub": "m",
                    "time_first": 1512038655, "time_last": 1512038655.2, "trace": ""}
        }))
        .unwrap();
        assert_eq!(t.created, 1512038654);
        assert_eq!(t.eco.unwrap().time_last, 1512038655);
        assert_eq!(t.attempt, 0);
    }

    #[test]
    fn service_created_is_flat() {
        let s = ServiceCreated {
            service: Service {
                guid: Uuid::nil(),
                name: "n".into(),
                template: "h/a/r/t/1.0.0".into(),
                version: "1.0.0".into(),
                state: vec![],
                public: false,
                data: None,
            },
            secret: "s".into(),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["secret"], "s");
        assert_eq!(v["name"], "n");
        assert!(v.get("data").is_none());
    }
}

/// Unix seconds as ISO 8601 (RFC 3339, UTC, to the millisecond).
/// The text of `GET /services/{guid}/logs`: a line per log line, oldest
/// first, `TIME LEVEL [action guid8] MESSAGE` (the tag is empty for a line
/// of the robot's own).
pub fn log_text<'a>(lines: impl IntoIterator<Item = (f64, &'a str, String, &'a str)>) -> String {
    let mut logs = String::new();
    for (time, level, tag, message) in lines {
        logs.push_str(&iso8601(time));
        logs.push(' ');
        logs.push_str(level);
        logs.push(' ');
        logs.push_str(&tag);
        logs.push_str(message);
        logs.push('\n');
    }
    logs
}

pub fn iso8601(unix: f64) -> String {
    let millis = (unix * 1000.0).round() as i128;
    time::OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC), for people.
pub fn human_time(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix.to_string(),
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn dates_read_as_iso8601_and_for_people() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400.5), "2000-02-29T00:00:00.5Z");
        assert_eq!(iso8601(1_700_000_000.0), "2023-11-14T22:13:20Z");
        assert_eq!(human_time(0), "1970-01-01 00:00:00");
        assert_eq!(human_time(1_512_038_654), "2017-11-30 10:44:14");
    }
}

/// One event of `GET /events`: the `data:` of a Server-Sent Event, whose
/// `id:` is `id` and `event:` is `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StreamEvent {
    /// One above the previous event's; `0` for a gap.
    pub id: u64,
    /// `service.created`, `service.deleted`, `service.upgraded`,
    /// `task.scheduled`, `task.started`, `task.finished`, `state.changed`,
    /// `log`, or `gap` (events this subscriber missed).
    pub kind: String,
    /// When it happened: unix seconds.
    pub time: f64,
    /// The service it is about; none for a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<EventService>,
    /// The task, as it was at that point (`task.*`); its arguments and
    /// result are `GET /services/{guid}/task_list/{task}`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<EventTask>,
    /// The change (`state.changed`): a tag set, or removed (`state` null),
    /// or a whole category removed (`tag` null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateChange>,
    /// The line (`log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<EventLog>,
    /// The template UIDs moved between (`service.upgraded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<Upgrade>,
    /// How many events were missed (`gap`); null when not known (the
    /// `Last-Event-ID` given is not of this run of the robot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
}

/// A task as an event tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventTask {
    pub guid: Uuid,
    pub action_name: String,
    pub state: TaskState,
    /// How many runs started.
    pub attempt: u32,
    /// When it was scheduled: unix seconds.
    pub created: f64,
    /// When its last run started: unix seconds.
    #[serde(default)]
    pub started: Option<f64>,
    /// How long it ran, in seconds, once finished.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eco: Option<EventEco>,
}

/// The error condition of a failed task, in an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventEco {
    pub cat: String,
    pub message: String,
}

/// The service an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventService {
    pub guid: Uuid,
    pub name: String,
    /// The UID of its template.
    pub template: String,
}

/// A change of a state table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StateChange {
    pub category: String,
    pub tag: Option<String>,
    pub state: Option<TagState>,
}

/// A line of a service's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventLog {
    /// `DEBUG`, `INFO`, `WARNING` or `ERROR`.
    pub level: String,
    pub message: String,
    /// The action whose task wrote it; absent for the robot's own lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// That task's guid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Uuid>,
}

/// A move to another template version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Upgrade {
    pub from: String,
    pub to: String,
}

/// `GET /graph`: the pending work of a robot, and what waits on what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Graph {
    /// Waiting and running tasks of the services the caller may see, by
    /// service name then queue order (running first); then the tasks of
    /// other robots that these wait on.
    pub tasks: Vec<GraphTask>,
    pub edges: Vec<GraphEdge>,
}

/// A task in the graph of pending work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GraphTask {
    pub guid: Uuid,
    /// The robot holding it, by the name this robot knows it by; null for
    /// this robot.
    #[serde(default)]
    pub robot: Option<String>,
    pub service_guid: Uuid,
    pub service_name: String,
    /// The UID of its service's template; empty for a task of another robot.
    #[serde(default)]
    pub template: String,
    pub action_name: String,
    /// `new` or `running`; null for a task of another robot.
    #[serde(default)]
    pub state: Option<TaskState>,
    /// Since when it is in that state (scheduled, or started): unix seconds.
    #[serde(default)]
    pub since: Option<f64>,
    /// The task, maybe of another robot, that scheduled this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_task: Option<String>,
}

/// `from` cannot go on before `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GraphEdge {
    pub from: Uuid,
    pub to: Uuid,
    /// `waits_on`: `from`'s action waits on the result of `to`;
    /// `queued_behind`: `from` runs after `to` in the same task list.
    pub kind: String,
}

/// `GET /services/{guid}/task_list/{task}/chain`: what blocks a task,
/// followed across robots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WaitChain {
    /// The task asked about, then each task that blocks the one before it
    /// (the task its action waits on, or the running task of its service).
    pub links: Vec<WaitLink>,
    /// The chain came back to a task of `visited`: the wait that asked
    /// would never end.
    pub cycle: bool,
}

/// One task of a [`WaitChain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WaitLink {
    pub guid: Uuid,
    /// The robots the chain went through to reach it, by the names each
    /// knows the next by (`b`, `b/c`); null for the robot answering.
    #[serde(default)]
    pub robot: Option<String>,
    /// `` `action` of service `name` ``.
    pub describe: String,
}
