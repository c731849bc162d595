//! `GET /graph`: the robot's pending work and what waits on what.

use axum::extract::State;
use zrobot_core::robot::EdgeKind;

use crate::auth::Caller;
use crate::wire;
use crate::AppState;

/// The graph of pending work: the waiting and running tasks of the services
/// the caller may list, each service's tasks in the order they run, and
/// edges `from` -> `to`: `waits_on` (the action of `from` waits on the
/// result of `to`, maybe a task of another robot) and `queued_behind` (`from`
/// runs after `to` in its service's task list).
#[utoipa::path(get, path = "/graph", tag = "robot",
    responses((status = 200, body = wire::Graph)))]
pub async fn graph(State(state): State<AppState>, caller: Caller) -> axum::Json<wire::Graph> {
    let pending = state.robot.pending_graph();
    let mut tasks = Vec::new();
    let mut shown = std::collections::HashSet::new();
    for p in pending
        .services
        .iter()
        .filter(|p| caller.may_list(&p.service))
    {
        let template = p.service.template_uid();
        for t in p.running.iter().chain(&p.waiting) {
            let r = t.record();
            shown.insert(r.guid);
            tasks.push(wire::GraphTask {
                guid: r.guid,
                robot: None,
                service_guid: r.service_guid,
                service_name: r.service_name.clone(),
                template: template.clone(),
                action_name: r.action_name.clone(),
                state: Some(wire::task_state(r.state)),
                since: Some(r.started.unwrap_or(r.created)),
                caller_task: r.trace.as_ref().and_then(|t| t.caller_task.clone()),
            });
        }
    }
    let remote: std::collections::HashMap<_, _> =
        pending.remote.iter().map(|r| (r.guid, r)).collect();
    let mut edges = Vec::new();
    for e in &pending.edges {
        // Between tasks the caller may see (or to another robot's task).
        if !shown.contains(&e.from) || !(shown.contains(&e.to) || remote.contains_key(&e.to)) {
            continue;
        }
        let kind = match e.kind {
            EdgeKind::WaitsOn => "waits_on",
            EdgeKind::QueuedBehind => "queued_behind",
        };
        edges.push(wire::GraphEdge {
            from: e.from,
            to: e.to,
            kind: kind.to_owned(),
        });
    }
    for e in &edges {
        let Some(r) = remote.get(&e.to) else { continue };
        if shown.insert(r.guid) {
            tasks.push(wire::GraphTask {
                guid: r.guid,
                robot: Some(r.robot.clone()),
                service_guid: r.service_guid,
                service_name: r.service_name.clone(),
                template: String::new(),
                action_name: r.action_name.clone(),
                state: None,
                since: None,
                caller_task: None,
            });
        }
    }
    axum::Json(wire::Graph { tasks, edges })
}
