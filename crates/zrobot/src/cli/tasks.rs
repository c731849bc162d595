//! `zrobot task ...`: schedule actions (and follow them), list, inspect and
//! cancel the tasks of a service.

use std::process::ExitCode;

use anyhow::Result;
use uuid::Uuid;
use zrobot_client::{Client, Task};

use super::context::{explain, failure, Ctx, Need, Target, EXIT_USAGE};
use super::{follow, output, values, TaskCommand};

pub async fn run(ctx: &Ctx, command: TaskCommand) -> Result<ExitCode> {
    let target = ctx.target()?;
    match command {
        TaskCommand::Schedule {
            service,
            action,
            args,
            args_file,
            wait,
        } => schedule(ctx, &target, &service, &action, args, args_file, wait).await,
        TaskCommand::List { service, all } => {
            let (guid, client) = ctx.service(&target, &service).await?;
            let tasks = client
                .tasks(guid, all)
                .await
                .map_err(|e| explain(&target, e, Need::Service(&service)))?;
            if ctx.json {
                output::json(&tasks)?;
            } else if tasks.is_empty() {
                println!(
                    "no {}task for `{service}`{}",
                    if all { "" } else { "waiting or running " },
                    if all {
                        ""
                    } else {
                        "; --all shows finished ones too"
                    }
                );
            } else {
                println!("{}", output::tasks_table(&tasks));
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Get { service, task, raw } => {
            check_task_id(&service, &task)?;
            let (guid, client) = ctx.service(&target, &service).await?;
            let task = task_of(&client, &target, guid, &service, &task).await?;
            let task = client
                .task(guid, task)
                .await
                .map_err(|e| explain(&target, e, Need::Service(&service)))?;
            if raw {
                return raw_result(&task);
            }
            if ctx.json {
                output::json(&task)?;
            } else {
                show(&task);
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Cancel { service, task } => {
            check_task_id(&service, &task)?;
            let (guid, client) = ctx.service(&target, &service).await?;
            let task = task_of(&client, &target, guid, &service, &task).await?;
            client
                .cancel_task(guid, task)
                .await
                .map_err(|e| explain(&target, e, Need::Service(&service)))?;
            // A cancelled task stays in the history, ended with its reason.
            let now = client
                .task(guid, task)
                .await
                .map_err(|e| explain(&target, e, Need::Service(&service)))?;
            if ctx.json {
                output::json(&now)?;
            } else {
                println!("task {task} of `{service}` cancelled");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Refuses (as a usage error) a task id that is neither a guid, nor the
/// start of one, nor `last`, before anything is asked of the robot.
fn check_task_id(service: &str, id: &str) -> Result<()> {
    let is_prefix = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if id == "last" || is_prefix {
        return Ok(());
    }
    Err(failure(
        EXIT_USAGE,
        format!(
            "`{id}` is not a task: give its guid, the start of it (as `zrobot task list {service} --all` shows), or `last`"
        ),
    ))
}

/// The task `id` names among the tasks of `service`: a guid, the start of
/// one (unique among its kept tasks), or `last` (the latest scheduled).
async fn task_of(
    client: &Client,
    target: &Target,
    service_guid: Uuid,
    service: &str,
    id: &str,
) -> Result<Uuid> {
    if let Ok(guid) = Uuid::parse_str(id) {
        return Ok(guid);
    }
    let wanted = id.to_ascii_lowercase();
    let tasks = client
        .tasks(service_guid, true)
        .await
        .map_err(|e| explain(target, e, Need::Service(service)))?;
    if wanted == "last" {
        return tasks
            .iter()
            .max_by_key(|t| t.created)
            .map(|t| t.guid)
            .ok_or_else(|| anyhow::anyhow!("`{service}` has no task yet"));
    }
    let matching: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.guid.to_string().starts_with(&wanted))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.guid),
        [] => anyhow::bail!(
            "no task of `{service}` starts with `{id}`: `zrobot task list {service} --all` lists them"
        ),
        many => anyhow::bail!(
            "`{id}` starts {} tasks of `{service}` ({}); give more of the guid",
            many.len(),
            many.iter()
                .take(5)
                .map(|t| t.guid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `task schedule`: schedules, then prints the task or, with `wait`,
/// follows it to its end.
async fn schedule(
    ctx: &Ctx,
    target: &Target,
    service: &str,
    action: &str,
    args: Vec<values::KeyValue>,
    args_file: Option<std::path::PathBuf>,
    wait: bool,
) -> Result<ExitCode> {
    let args = values::build(args_file.as_deref(), &args, "-a")?;
    let (guid, client) = ctx.service(target, service).await?;
    let task = client
        .schedule(guid, action, args)
        .await
        .map_err(|e| explain(target, e, Need::Service(service)))?;
    if !wait {
        if ctx.json {
            output::json(&task)?;
        } else {
            println!(
                "task {} scheduled: {}.{} ({})",
                task.guid,
                task.service_name,
                task.action_name,
                output::task_state(task.state)
            );
            println!(
                "follow it with `zrobot task get {} {}`",
                task.service_name, task.guid
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let followed = follow::follow(&client, vec![task]).await;
    if ctx.json {
        output::json(followed[0].last())?;
        Ok(follow::code(&followed))
    } else {
        Ok(follow::summary(&followed))
    }
}

/// One task, every field, for people.
/// A text as it is (not JSON-escaped); anything else as indented JSON.
fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// `task get --raw`: the result alone, for scripts; 1 if there is none to
/// give (the task failed, or is not done), saying why on stderr.
fn raw_result(task: &Task) -> Result<ExitCode> {
    if let Some(eco) = &task.eco {
        eprintln!("task {} failed: {}: {}", task.guid, eco.cat, eco.message);
        return Ok(ExitCode::from(1));
    }
    if !task.state.is_done() {
        eprintln!(
            "task {} is {}: no result yet; `zrobot task get {} {} --raw` again later",
            task.guid,
            output::task_state(task.state),
            task.service_name,
            task.guid
        );
        return Ok(ExitCode::from(1));
    }
    match task.result_value() {
        Some(v) => println!("{}", as_text(&v)),
        None => println!("null"),
    }
    Ok(ExitCode::SUCCESS)
}

fn show(task: &Task) {
    let mut t = output::table(&[]);
    let row = |k: &str, v: String| vec![k.to_owned(), v];
    t.add_row(row("task", task.guid.to_string()));
    t.add_row(row(
        "service",
        format!("{} ({})", task.service_name, task.service_guid),
    ));
    t.add_row(row("template", task.template_uid.clone()));
    t.add_row(row("action", task.action_name.clone()));
    t.add_row(row("args", task.args.to_string()));
    t.add_row(row("state", output::task_state(task.state).to_owned()));
    t.add_row(row("created", output::time(task.created)));
    t.add_row(row("duration", output::duration(task.duration)));
    t.add_row(row("attempts", task.attempt.to_string()));
    if let Some(v) = task.result_value() {
        t.add_row(row("result", as_text(&v)));
    }
    if let Some(eco) = &task.eco {
        t.add_row(row("error", format!("{}: {}", eco.cat, eco.message)));
        t.add_row(row("failed runs", eco.count.to_string()));
        if !eco.trace.is_empty() {
            t.add_row(row("trace", eco.trace.clone()));
        }
    }
    println!("{t}");
}
