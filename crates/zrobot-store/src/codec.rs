//! How records become rows and back: UUIDs are 16-byte blobs, JSON is text,
//! enums are their lowercase names.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Row;
use serde_json::Value;
use uuid::Uuid;
use zrobot_core::service::StateTable;
use zrobot_core::store::{ServiceRecord, StoreOp};
use zrobot_core::task::{Eco, Priority, TaskRecord, TaskState};

use crate::error::Failure;

/// A [`StoreOp`] with its JSON already encoded: encoding runs on the thread of
/// whoever commits, so that the one writer thread only binds and steps.
#[derive(Debug)]
pub(crate) enum Op {
    PutService(ServiceRow),
    DeleteService(Uuid),
    PutTask(TaskRow),
    TaskStarted {
        guid: Uuid,
        seq: i64,
        attempt: u32,
        started: f64,
    },
    RemoveTask {
        guid: Uuid,
        seq: i64,
    },
    SaveData {
        service: Uuid,
        data: String,
    },
    SaveState {
        service: Uuid,
        state: String,
    },
    SaveTemplate {
        service: Uuid,
        template_uid: String,
    },
    /// `None` removes the setting.
    PutSetting {
        key: String,
        value: Option<String>,
    },
}

#[derive(Debug)]
pub(crate) struct ServiceRow {
    pub guid: Uuid,
    pub name: String,
    pub template_uid: String,
    pub public: bool,
    pub secrets: String,
    pub data: String,
    pub state: String,
    pub created: f64,
}

/// A task as its row: the text columns are packed in one buffer, one
/// allocation per task rather than six, because the writer thread frees them
/// all and cross-thread frees are not cheap.
#[derive(Debug)]
pub(crate) struct TaskRow {
    pub guid: Uuid,
    pub service_guid: Uuid,
    pub priority: &'static str,
    pub seq: i64,
    pub state: TaskState,
    pub attempt: u32,
    pub created: f64,
    pub started: Option<f64>,
    pub duration: Option<f64>,
    /// service name, template uid, action name, args, result, eco, trace,
    /// idempotency key: UTF-8, back to back.
    text: Vec<u8>,
    /// Where each of them ends in `text`.
    ends: [usize; 8],
    has_result: bool,
    has_eco: bool,
    has_trace: bool,
    has_key: bool,
}

impl TaskRow {
    fn encode(t: &TaskRecord) -> serde_json::Result<TaskRow> {
        let mut text = Vec::with_capacity(
            t.service_name.len() + t.template_uid.len() + t.action_name.len() + 64,
        );
        let mut ends = [0; 8];
        text.extend_from_slice(t.service_name.as_bytes());
        ends[0] = text.len();
        text.extend_from_slice(t.template_uid.as_bytes());
        ends[1] = text.len();
        text.extend_from_slice(t.action_name.as_bytes());
        ends[2] = text.len();
        serde_json::to_writer(&mut text, &t.args)?;
        ends[3] = text.len();
        if let Some(result) = &t.result {
            serde_json::to_writer(&mut text, result)?;
        }
        ends[4] = text.len();
        if let Some(eco) = &t.eco {
            serde_json::to_writer(&mut text, eco)?;
        }
        ends[5] = text.len();
        if let Some(trace) = &t.trace {
            serde_json::to_writer(&mut text, trace)?;
        }
        ends[6] = text.len();
        if let Some(key) = &t.key {
            text.extend_from_slice(key.as_bytes());
        }
        ends[7] = text.len();
        Ok(TaskRow {
            guid: t.guid,
            service_guid: t.service_guid,
            priority: priority_name(t.priority),
            // Bit-preserving: `seq` only ever grows from zero, far below i64::MAX.
            seq: t.seq as i64,
            state: t.state,
            attempt: t.attempt,
            created: t.created,
            started: t.started,
            duration: t.duration,
            text,
            ends,
            has_result: t.result.is_some(),
            has_eco: t.eco.is_some(),
            has_trace: t.trace.is_some(),
            has_key: t.key.is_some(),
        })
    }

    /// Text field `i`, bound as SQL text without another copy or check.
    fn field(&self, i: usize) -> ToSqlOutput<'_> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        ToSqlOutput::Borrowed(ValueRef::Text(&self.text[start..self.ends[i]]))
    }

    pub fn service_name(&self) -> ToSqlOutput<'_> {
        self.field(0)
    }

    pub fn template_uid(&self) -> ToSqlOutput<'_> {
        self.field(1)
    }

    pub fn action_name(&self) -> ToSqlOutput<'_> {
        self.field(2)
    }

    pub fn args(&self) -> ToSqlOutput<'_> {
        self.field(3)
    }

    pub fn result(&self) -> Option<ToSqlOutput<'_>> {
        self.has_result.then(|| self.field(4))
    }

    pub fn eco(&self) -> Option<ToSqlOutput<'_>> {
        self.has_eco.then(|| self.field(5))
    }

    pub fn trace(&self) -> Option<ToSqlOutput<'_>> {
        self.has_trace.then(|| self.field(6))
    }

    pub fn key(&self) -> Option<ToSqlOutput<'_>> {
        self.has_key.then(|| self.field(7))
    }
}

impl Op {
    pub fn encode(op: StoreOp) -> serde_json::Result<Op> {
        Ok(match op {
            StoreOp::PutService(s) => Op::PutService(ServiceRow {
                guid: s.guid,
                secrets: serde_json::to_string(&s.secrets)?,
                data: serde_json::to_string(&s.data)?,
                state: serde_json::to_string(&s.state)?,
                name: s.name,
                template_uid: s.template_uid,
                public: s.public,
                created: s.created,
            }),
            StoreOp::DeleteService(guid) => Op::DeleteService(guid),
            StoreOp::PutTask(t) => Op::PutTask(TaskRow::encode(&t)?),
            StoreOp::TaskStarted {
                guid,
                seq,
                attempt,
                started,
            } => Op::TaskStarted {
                guid,
                seq: seq as i64,
                attempt,
                started,
            },
            StoreOp::RemoveTask { guid, seq } => Op::RemoveTask {
                guid,
                seq: seq as i64,
            },
            StoreOp::SaveData { service, data } => Op::SaveData {
                service,
                data: serde_json::to_string(&*data)?,
            },
            StoreOp::SaveState { service, state } => Op::SaveState {
                service,
                state: serde_json::to_string(&state)?,
            },
            StoreOp::SaveTemplate {
                service,
                template_uid,
            } => Op::SaveTemplate {
                service,
                template_uid,
            },
            StoreOp::PutSetting { key, value } => Op::PutSetting {
                key,
                value: (!value.is_null())
                    .then(|| serde_json::to_string(&value))
                    .transpose()?,
            },
        })
    }
}

/// The columns of both task tables, in the order [`task_from_row`] reads
/// them and the writer binds them; a macro so that SQL text can be built
/// around it with `concat!`.
macro_rules! task_columns {
    () => {
        "guid, service_guid, service_name, template_uid, action_name, args, priority, seq, state, \
         attempt, created, started, duration, result, eco, trace, idem_key"
    };
}
pub(crate) use task_columns;

/// [`task_columns`] as a constant.
pub(crate) const TASK_COLUMNS: &str = task_columns!();

/// The columns of `services`, in the order [`service_from_row`] reads them.
pub(crate) const SERVICE_COLUMNS: &str =
    "guid, name, template_uid, public, secrets, data, state, created";

pub(crate) fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::System => "system",
        Priority::Normal => "normal",
    }
}

/// A task from the columns of [`TASK_COLUMNS`], starting at column `first`.
pub(crate) fn task_from_row(row: &Row<'_>, first: usize) -> Result<TaskRecord, Failure> {
    let guid = uuid_at(row, first, "task guid", "a task")?;
    let owner = || format!("task {guid}");
    let priority = match row.get_ref(first + 6)?.as_str()? {
        "system" => Priority::System,
        "normal" => Priority::Normal,
        other => return Err(corrupt("the priority", owner(), other)),
    };
    let state = match row.get_ref(first + 8)?.as_str()? {
        "new" => TaskState::New,
        "running" => TaskState::Running,
        "ok" => TaskState::Ok,
        "error" => TaskState::Error,
        other => return Err(corrupt("the state", owner(), other)),
    };
    let eco: Option<Eco> = match row.get_ref(first + 14)? {
        ValueRef::Null => None,
        v => Some(serde_json::from_str(v.as_str()?).map_err(|e| corrupt("the eco", owner(), e))?),
    };
    Ok(TaskRecord {
        guid,
        service_guid: uuid_at(row, first + 1, "service guid", &owner())?,
        service_name: row.get(first + 2)?,
        template_uid: row.get(first + 3)?,
        action_name: row.get(first + 4)?,
        args: json_at(row, first + 5, "the args", &owner)?,
        priority,
        seq: row.get::<_, i64>(first + 7)? as u64,
        state,
        attempt: row.get(first + 9)?,
        created: row.get(first + 10)?,
        started: row.get(first + 11)?,
        duration: row.get(first + 12)?,
        result: match row.get_ref(first + 13)? {
            ValueRef::Null => None,
            _ => Some(json_at(row, first + 13, "the result", &owner)?),
        },
        eco,
        trace: match row.get_ref(first + 15)? {
            ValueRef::Null => None,
            _ => Some(json_at(row, first + 15, "the trace", &owner)?),
        },
        key: row.get(first + 16)?,
    })
}

pub(crate) fn service_from_row(row: &Row<'_>) -> Result<ServiceRecord, Failure> {
    let guid = uuid_at(row, 0, "service guid", "a service")?;
    let owner = || format!("service {guid}");
    let secrets: Vec<String> = json_at(row, 4, "the secret hashes", &owner)?;
    let state: StateTable = json_at(row, 6, "the state table", &owner)?;
    Ok(ServiceRecord {
        guid,
        name: row.get(1)?,
        template_uid: row.get(2)?,
        public: row.get(3)?,
        data: json_at::<Value>(row, 5, "the data", &owner)?,
        state,
        secrets,
        created: row.get(7)?,
    })
}

pub(crate) fn uuid_at(
    row: &Row<'_>,
    i: usize,
    what: &'static str,
    owner: &str,
) -> Result<Uuid, Failure> {
    match row.get_ref(i)? {
        ValueRef::Blob(b) => Uuid::from_slice(b).map_err(|e| corrupt(what, owner.to_owned(), e)),
        other => Err(corrupt(
            what,
            owner.to_owned(),
            format!("a {:?} where a 16-byte blob belongs", other.data_type()),
        )),
    }
}

fn json_at<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    i: usize,
    what: &'static str,
    owner: &dyn Fn() -> String,
) -> Result<T, Failure> {
    let text = row.get_ref(i)?.as_str()?;
    serde_json::from_str(text).map_err(|e| corrupt(what, owner(), e))
}

fn corrupt(what: &'static str, owner: String, detail: impl std::fmt::Display) -> Failure {
    Failure::Corrupt {
        what,
        owner,
        detail: detail.to_string(),
    }
}
