//! `zrobot graph`: the robot's pending work, as a tree of what waits on
//! what, or as Graphviz dot (`--dot`).

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use uuid::Uuid;
use zrobot_client::{Graph, GraphTask, TaskState};

use super::context::{explain, Ctx, Need, Secrets};
use super::output;

/// `zrobot graph` flags.
#[derive(Args, Debug, Clone)]
pub struct GraphArgs {
    /// Print Graphviz dot (`zrobot graph --dot | dot -Tsvg > graph.svg`).
    #[arg(long)]
    pub dot: bool,
}

pub async fn run(ctx: &Ctx, args: GraphArgs) -> Result<ExitCode> {
    let target = ctx.target()?;
    let client = ctx.client(&target, Secrets::All)?;
    let graph = client
        .graph()
        .await
        .map_err(|e| explain(&target, e, Need::Anyone))?;
    if ctx.json {
        output::json(&graph)?;
    } else if args.dot {
        print!("{}", dot(&graph));
    } else if graph.tasks.is_empty() {
        println!("no pending work that you may see on {}", target.label());
    } else {
        print!("{}", tree(&graph, zrobot_core::time::now()));
    }
    Ok(ExitCode::SUCCESS)
}

fn short(g: Uuid) -> String {
    g.simple().to_string()[..8].to_owned()
}

fn label(t: &GraphTask) -> String {
    match &t.robot {
        Some(r) => format!("`{}` of `{}` on robot {r}", t.action_name, t.service_name),
        None => format!("`{}` of `{}`", t.action_name, t.service_name),
    }
}

fn state(t: &GraphTask, now: f64) -> String {
    let since = t
        .since
        .map(|s| format!(" {}", output::duration(Some((now - s).max(0.0)))))
        .unwrap_or_default();
    match t.state {
        Some(TaskState::Running) => format!("running{since}"),
        Some(TaskState::New) => format!("queued{since}"),
        Some(s) => output::task_state(s).to_owned(),
        None => "remote".to_owned(),
    }
}

/// One block per service: its running task with the chain of what it waits
/// on, then its queued tasks.
fn tree(g: &Graph, now: f64) -> String {
    let by_guid: HashMap<Uuid, &GraphTask> = g.tasks.iter().map(|t| (t.guid, t)).collect();
    let waits: HashMap<Uuid, Uuid> = g
        .edges
        .iter()
        .filter(|e| e.kind == "waits_on")
        .map(|e| (e.from, e.to))
        .collect();
    let mut out = String::new();
    let mut services: Vec<(Uuid, &str)> = Vec::new();
    for t in g.tasks.iter().filter(|t| t.robot.is_none()) {
        if !services.iter().any(|(s, _)| *s == t.service_guid) {
            services.push((t.service_guid, &t.template));
        }
    }
    for (svc, template) in services {
        let tasks: Vec<&GraphTask> = g
            .tasks
            .iter()
            .filter(|t| t.robot.is_none() && t.service_guid == svc)
            .collect();
        out.push_str(&format!("{} ({template})\n", tasks[0].service_name));
        for (i, t) in tasks.iter().enumerate() {
            let last = i + 1 == tasks.len();
            let (branch, indent) = if last {
                ("└─", "   ")
            } else {
                ("├─", "│  ")
            };
            out.push_str(&format!(
                "{branch} {} {} {}\n",
                state(t, now),
                t.action_name,
                short(t.guid)
            ));
            // The chain of waits from this task, stopping at a loop.
            let mut seen = HashSet::from([t.guid]);
            let mut depth = 1;
            let mut at = t.guid;
            while let Some(next) = waits.get(&at) {
                let pad = "  ".repeat(depth);
                let looped = !seen.insert(*next);
                let what = match by_guid.get(next) {
                    Some(n) => format!("{} {}", label(n), short(n.guid)),
                    None => format!("task {}", short(*next)),
                };
                let mark = if looped { "  <- a cycle" } else { "" };
                out.push_str(&format!("{indent}{pad}waits on {what}{mark}\n"));
                if looped {
                    break;
                }
                at = *next;
                depth += 1;
            }
        }
    }
    out
}

/// Graphviz dot: tasks as nodes grouped by service (and other robots'
/// tasks by robot); `waits on` solid, `queued behind` dashed.
fn dot(g: &Graph) -> String {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::from(
        "digraph pending {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n",
    );
    let mut groups: Vec<(String, String, Vec<&GraphTask>)> = Vec::new();
    for t in &g.tasks {
        let (key, title) = match &t.robot {
            Some(r) => (format!("robot_{r}"), format!("robot {r}")),
            None => (
                format!("service_{}", t.service_guid.simple()),
                format!("{} ({})", t.service_name, t.template),
            ),
        };
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, members)) => members.push(t),
            None => groups.push((key, title, vec![t])),
        }
    }
    for (key, title, members) in &groups {
        out.push_str(&format!(
            "  subgraph \"cluster_{}\" {{\n    label=\"{}\";\n",
            quote(key),
            quote(title)
        ));
        for t in members {
            let what = match &t.robot {
                Some(_) => format!("{}\\n{}", quote(&t.action_name), quote(&t.service_name)),
                None => quote(&t.action_name),
            };
            let style = match t.state {
                Some(TaskState::Running) => ", style=bold",
                None => ", style=dashed",
                _ => "",
            };
            out.push_str(&format!(
                "    \"{}\" [label=\"{what}\\n{}\"{style}];\n",
                t.guid,
                short(t.guid)
            ));
        }
        out.push_str("  }\n");
    }
    for e in &g.edges {
        let style = if e.kind == "waits_on" {
            "label=\"waits on\""
        } else {
            "style=dashed, label=\"queued behind\""
        };
        out.push_str(&format!("  \"{}\" -> \"{}\" [{style}];\n", e.from, e.to));
    }
    out.push_str("}\n");
    out
}
