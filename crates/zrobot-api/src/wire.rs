//! The API's JSON bodies (defined once, in `zrobot-client`, so server and
//! client cannot drift) and how core types become them.

pub use zrobot_client::wire::*;

use zrobot_core::service::LogLine;
use zrobot_core::{TaskRecord, TemplateUid};

/// A service as shown to a caller; `data` only in god mode.
pub fn service(svc: &zrobot_core::Service, with_data: bool) -> Service {
    let template = svc.template();
    let state = svc
        .state()
        .into_iter()
        .flat_map(|(category, tags)| {
            tags.into_iter().map(move |(tag, state)| ServiceState {
                category: category.clone(),
                tag,
                state: tag_state(state),
            })
        })
        .collect();
    Service {
        guid: svc.guid,
        name: svc.name.clone(),
        template: template.uid.to_string(),
        version: template.uid.version.to_string(),
        state,
        public: svc.public,
        data: with_data.then(|| (*svc.data()).clone()),
    }
}

fn tag_state(s: zrobot_core::TagState) -> TagState {
    match s {
        zrobot_core::TagState::Ok => TagState::Ok,
        zrobot_core::TagState::Error => TagState::Error,
        zrobot_core::TagState::Warning => TagState::Warning,
        zrobot_core::TagState::Skipped => TagState::Skipped,
    }
}

pub(crate) fn task_state(s: zrobot_core::TaskState) -> TaskState {
    match s {
        zrobot_core::TaskState::New => TaskState::New,
        zrobot_core::TaskState::Running => TaskState::Running,
        zrobot_core::TaskState::Ok => TaskState::Ok,
        zrobot_core::TaskState::Error => TaskState::Error,
    }
}

pub fn eco(e: &zrobot_core::Eco) -> Eco {
    Eco {
        cat: e.category.clone(),
        count: e.count,
        message: e.message.clone(),
        // The robot's messages are written for the caller: nothing to hide.
        message_pub: e.message.clone(),
        time_first: e.time_first as i64,
        time_last: e.time_last as i64,
        trace: e.trace.clone(),
    }
}

pub fn task(r: &TaskRecord) -> Task {
    let template_name = TemplateUid::parse(&r.template_uid)
        .map(|u| u.name)
        .unwrap_or_else(|| r.template_uid.clone());
    Task {
        guid: r.guid,
        service_guid: r.service_guid,
        service_name: r.service_name.clone(),
        template_name,
        template_uid: r.template_uid.clone(),
        action_name: r.action_name.clone(),
        args: r.args.clone(),
        state: task_state(r.state),
        created: r.created as i64,
        duration: r.duration,
        // 0-robot sent no result for an action that returned nothing.
        result: r
            .result
            .as_ref()
            .filter(|v| !v.is_null())
            .map(|v| v.to_string()),
        eco: r.eco.as_ref().map(eco),
        attempt: r.attempt,
        caller_task: r.trace.as_ref().and_then(|t| t.caller_task.clone()),
        traceparent: r.trace.as_ref().and_then(|t| t.traceparent.clone()),
    }
}

pub fn template(t: &zrobot_core::Template) -> Template {
    Template {
        uid: t.uid.to_string(),
        host: t.uid.repo.host.clone(),
        account: t.uid.repo.account.clone(),
        repository: t.uid.repo.repo.clone(),
        name: t.uid.name.clone(),
        version: t.uid.version.to_string(),
        commit: t.commit.clone(),
    }
}

/// A service's log as one text: a line per entry, `time level message`.
pub fn logs(lines: &[LogLine]) -> Logs {
    Logs {
        logs: zrobot_client::wire::log_text(
            lines
                .iter()
                .map(|l| (l.time, l.level.as_str(), l.task_tag(), l.message.as_str())),
        ),
    }
}

pub use zrobot_client::wire::iso8601;

/// An event as `GET /events` sends it; a task event shows the task as it
/// was at that point.
pub fn event(e: &zrobot_core::events::Event) -> StreamEvent {
    use zrobot_core::events::What;
    let mut out = StreamEvent {
        id: e.id,
        kind: e.what.kind().to_owned(),
        time: e.time,
        service: Some(EventService {
            guid: e.service.guid,
            name: e.service.name.clone(),
            template: e.service.template_uid(),
        }),
        task: None,
        state: None,
        log: None,
        upgrade: None,
        missed: None,
    };
    match &e.what {
        What::ServiceCreated | What::ServiceDeleted => {}
        What::ServiceUpgraded { from, to } => {
            out.upgrade = Some(Upgrade {
                from: from.clone(),
                to: to.clone(),
            })
        }
        What::TaskScheduled(t) | What::TaskStarted(t) | What::TaskFinished(t) => {
            out.task = Some(EventTask {
                guid: t.guid,
                action_name: t.action.clone(),
                state: task_state(t.state),
                attempt: t.attempt,
                created: t.created,
                started: t.started,
                duration: t.duration,
                eco: t.eco.as_ref().map(|(cat, message)| EventEco {
                    cat: cat.clone(),
                    message: message.clone(),
                }),
            })
        }
        What::StateChanged {
            category,
            tag,
            state,
        } => {
            out.state = Some(StateChange {
                category: category.clone(),
                tag: tag.clone(),
                state: state.map(tag_state),
            })
        }
        What::Log(line) => {
            out.log = Some(EventLog {
                level: line.level.as_str().to_owned(),
                message: line.message.clone(),
                action: line.task.as_ref().map(|(a, _)| a.clone()),
                task: line.task.as_ref().map(|(_, g)| *g),
            })
        }
    }
    out
}

/// The event that tells a subscriber it missed some.
pub fn gap(missed: Option<u64>) -> StreamEvent {
    StreamEvent {
        id: 0,
        kind: "gap".to_owned(),
        time: zrobot_core::time::now(),
        service: None,
        task: None,
        state: None,
        log: None,
        upgrade: None,
        missed,
    }
}
