//! `zrobot events`: the robot's events, one line each; with `--follow`, live,
//! reconnecting after the last event seen if the connection drops.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use zrobot_client::{EventsQuery, StreamEvent};

use super::context::{explain, Ctx, Need, Secrets};
use super::output;

/// How long `--follow` waits before connecting again.
const RECONNECT: Duration = Duration::from_secs(1);

/// `zrobot events` flags.
#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    /// Keep printing events as they happen, until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the events of this service (its name or guid).
    #[arg(long, value_name = "NAME_OR_GUID")]
    pub service: Option<String>,
    /// Only the events of services of this template (its name, or the start of its UID).
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Only these kinds, comma-separated: service, task, state, log, or one
    /// kind such as task.finished.
    #[arg(long, value_name = "KINDS")]
    pub kind: Option<String>,
    /// Only the events after this id (the first column of the output).
    #[arg(long, value_name = "ID")]
    pub after: Option<u64>,
}

pub async fn run(ctx: &Ctx, args: EventsArgs) -> Result<ExitCode> {
    let target = ctx.target()?;
    let client = ctx.client(&target, Secrets::All)?;
    let mut query = EventsQuery {
        service: args.service,
        template: args.template,
        kind: args.kind,
        follow: args.follow,
        after: args.after,
    };
    let mut printed = 0usize;
    loop {
        let mut stream = client
            .events(&query)
            .await
            .map_err(|e| explain(&target, e, Need::Anyone))?;
        loop {
            match stream.next().await {
                Ok(Some(e)) => {
                    if e.id != 0 {
                        query.after = Some(e.id);
                    }
                    print(ctx.json, &e)?;
                    printed += 1;
                }
                Ok(None) => break,
                Err(e) if args.follow => {
                    eprintln!(
                        "connection to {} lost ({e}); reconnecting after event {}",
                        target.label(),
                        query.after.map_or("-".to_owned(), |a| a.to_string())
                    );
                    break;
                }
                Err(e) => return Err(explain(&target, e, Need::Anyone)),
            }
        }
        if !args.follow {
            break;
        }
        tokio::time::sleep(RECONNECT).await;
    }
    if printed == 0 && !ctx.json {
        eprintln!(
            "no event that you may see on {}: the robot keeps the last {} events; `--follow` waits for new ones",
            target.label(),
            zrobot_core::events::WINDOW
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print(json: bool, e: &StreamEvent) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let service = e.service.as_ref().map_or("-", |s| s.name.as_str());
    println!(
        "{:<17} {} {:<16} {:<12} {}",
        e.id,
        output::time(e.time as i64),
        e.kind,
        service,
        detail(e)
    );
    Ok(())
}

/// What an event says beyond its kind and service, in one line.
fn detail(e: &StreamEvent) -> String {
    if let Some(t) = &e.task {
        let mut s = format!("{} {}", t.action_name, t.guid);
        if e.kind == "task.finished" {
            s.push_str(&format!(
                " {} {}",
                output::task_state(t.state),
                output::duration(t.duration)
            ));
            if let Some(eco) = &t.eco {
                s.push_str(&format!(
                    ": {}: {}",
                    eco.cat,
                    output::first_line(&eco.message)
                ));
            }
        }
        return s;
    }
    if let Some(c) = &e.state {
        let state = c
            .state
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "removed".to_owned());
        return format!("{}/{} {state}", c.category, c.tag.as_deref().unwrap_or("*"));
    }
    if let Some(l) = &e.log {
        let tag = match (&l.action, &l.task) {
            (Some(action), Some(task)) => {
                format!("[{action} {}] ", &task.simple().to_string()[..8])
            }
            _ => String::new(),
        };
        return format!("{} {tag}{}", l.level, output::first_line(&l.message));
    }
    if let Some(u) = &e.upgrade {
        return format!("{} -> {}", u.from, u.to);
    }
    if e.kind == "gap" {
        return match e.missed {
            Some(n) => {
                format!("{n} events missed (older than the robot keeps, or read too slowly)")
            }
            None => "events missed: the id given is not of this run of the robot".to_owned(),
        };
    }
    String::new()
}
