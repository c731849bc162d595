//! `zrobot service ...`: list, inspect, create and delete services, their
//! actions and their logs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use comfy_table::Cell;
use serde_json::json;
use zrobot_client::{ServiceCreate, ServiceFilter};

use super::context::{explain, Ctx, Need, Secrets, Target};
use super::{output, values, ServiceCommand, ServiceFilterArgs};

/// How often `service logs -f` asks for the log.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

pub async fn run(ctx: &mut Ctx, command: ServiceCommand) -> Result<ExitCode> {
    let target = ctx.target()?;
    match command {
        ServiceCommand::List(filter) => list(ctx, &target, filter).await?,
        ServiceCommand::Get { service } => get(ctx, &target, &service).await?,
        ServiceCommand::Create {
            template,
            name,
            data,
            data_file,
            public,
        } => create(ctx, &target, template, name, data, data_file, public).await?,
        ServiceCommand::Delete { service } => delete(ctx, &target, &service).await?,
        ServiceCommand::Actions { service } => actions(ctx, &target, &service).await?,
        ServiceCommand::Logs { service, follow } => logs(ctx, &target, &service, follow).await?,
        ServiceCommand::ClearState {
            service,
            category,
            tag,
        } => clear_state(ctx, &target, &service, &category, tag.as_deref()).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes a tag, or a category, from a service's state table.
async fn clear_state(
    ctx: &Ctx,
    target: &Target,
    service: &str,
    category: &str,
    tag: Option<&str>,
) -> Result<()> {
    let (guid, client) = ctx.service(target, service).await?;
    client
        .clear_state(guid, category, tag)
        .await
        .map_err(|e| explain(target, e, Need::Service(service)))?;
    let what = tag.map_or_else(|| category.to_owned(), |t| format!("{category}/{t}"));
    if ctx.json {
        output::json(&json!({"guid": guid, "cleared": what}))?;
    } else {
        println!("state `{what}` of `{service}` cleared");
    }
    Ok(())
}

/// Lists the services the caller may see.
async fn list(ctx: &Ctx, target: &Target, filter: ServiceFilterArgs) -> Result<()> {
    let client = ctx.client(target, Secrets::All)?;
    let services = client
        .services(&to_filter(filter))
        .await
        .map_err(|e| explain(target, e, Need::Anyone))?;
    if ctx.json {
        output::json(&services)?;
    } else if services.is_empty() {
        println!(
            "no service that you may see on {}: create one with `zrobot service create TEMPLATE NAME`",
            target.label()
        );
    } else {
        println!("{}", output::services_table(&services));
    }
    Ok(())
}

/// Shows one service: its fields, data (when the caller may read it) and state table.
async fn get(ctx: &Ctx, target: &Target, service: &str) -> Result<()> {
    let (guid, client) = ctx.service(target, service).await?;
    let svc = client
        .service(guid)
        .await
        .map_err(|e| explain(target, e, Need::Service(service)))?;
    if ctx.json {
        output::json(&svc)?;
        return Ok(());
    }
    let mut t = output::table(&[]);
    t.add_row(vec!["name".to_owned(), svc.name.clone()]);
    t.add_row(vec!["guid".to_owned(), svc.guid.to_string()]);
    t.add_row(vec!["template".to_owned(), svc.template.clone()]);
    t.add_row(vec!["public".to_owned(), svc.public.to_string()]);
    if let Some(data) = &svc.data {
        t.add_row(vec!["data".to_owned(), serde_json::to_string_pretty(data)?]);
    }
    println!("{t}");
    if !svc.state.is_empty() {
        let mut s = output::table(&["CATEGORY", "TAG", "STATE"]);
        for row in &svc.state {
            let state = serde_json::to_value(row.state)?;
            s.add_row(vec![
                Cell::new(&row.category),
                Cell::new(&row.tag),
                output::state_cell(state.as_str().unwrap_or_default()),
            ]);
        }
        println!("{s}");
    }
    Ok(())
}

/// Creates a service and keeps its secret.
async fn create(
    ctx: &mut Ctx,
    target: &Target,
    template: String,
    name: String,
    data: Vec<values::KeyValue>,
    data_file: Option<std::path::PathBuf>,
    public: bool,
) -> Result<()> {
    let data = values::build(data_file.as_deref(), &data, "-d")?;
    let client = ctx.client(target, Secrets::None)?;
    let created = client
        .create_service(&ServiceCreate {
            template,
            name,
            data,
            public,
        })
        .await
        .map_err(|e| explain(target, e, Need::User))?;
    // The secret is shown once: keep it before anything else can fail.
    ctx.store_secrets(
        target,
        &[(
            created.service.guid,
            created.service.name.clone(),
            created.secret.clone(),
        )],
    )?;
    if ctx.json {
        output::json(&created)?;
    } else {
        println!(
            "service `{}` ({}) created from {}; its secret is stored in {}",
            created.service.name,
            created.service.guid,
            created.service.template,
            ctx.file.path().display()
        );
    }
    Ok(())
}

/// Deletes a service and forgets its secret.
async fn delete(ctx: &mut Ctx, target: &Target, service: &str) -> Result<()> {
    let (guid, client) = ctx.service(target, service).await?;
    let deleted = client
        .delete_service_report(guid)
        .await
        .map_err(|e| explain(target, e, Need::Service(service)))?;
    ctx.forget_secret(target, guid)?;
    if ctx.json {
        output::json(
            &json!({"guid": guid, "deleted": true, "on_delete_failed": deleted.on_delete_failed}),
        )?;
    } else {
        println!("service `{service}` ({guid}) deleted");
    }
    if let Some(first) = deleted.on_delete_failed.first() {
        let more = deleted.on_delete_failed.len() - 1;
        anyhow::bail!(
            "service `{service}` is deleted, but its on_delete action `{}` failed: {}{}; what it was to undo may still exist, and the robot's log says more",
            first.action,
            first.message,
            if more > 0 { format!(" (and {more} more on_delete action(s) failed)") } else { String::new() }
        );
    }
    Ok(())
}

/// Lists a service's actions and their arguments.
async fn actions(ctx: &Ctx, target: &Target, service: &str) -> Result<()> {
    let (guid, client) = ctx.service(target, service).await?;
    let actions = client
        .actions(guid)
        .await
        .map_err(|e| explain(target, e, Need::Service(service)))?;
    if ctx.json {
        output::json(&actions)?;
        return Ok(());
    }
    let mut t = output::table(&["ACTION", "ARGUMENTS"]);
    for a in &actions {
        t.add_row(vec![
            a.name.clone(),
            a.arguments_schema
                .as_ref()
                .map(describe_schema)
                .unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// Prints a service's log; with `follow`, the new lines as they come.
async fn logs(ctx: &Ctx, target: &Target, service: &str, follow: bool) -> Result<()> {
    let (guid, client) = ctx.service(target, service).await?;
    let mut last: Option<String> = None;
    loop {
        let logs = client
            .logs(guid)
            .await
            .map_err(|e| explain(target, e, Need::Service(service)))?;
        if ctx.json && !follow {
            output::json(&logs)?;
            break;
        }
        let lines: Vec<&str> = logs.logs.lines().collect();
        // The robot keeps a bounded log, cut at the front: new lines
        // are those after the last one printed, wherever it is now.
        let start = match &last {
            None => 0,
            Some(l) => lines.iter().rposition(|x| x == l).map_or(0, |p| p + 1),
        };
        for line in &lines[start..] {
            if ctx.json {
                println!("{}", json!({ "line": line }));
            } else {
                println!("{line}");
            }
        }
        if let Some(l) = lines.last() {
            last = Some((*l).to_owned());
        }
        if !follow {
            break;
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
    Ok(())
}

fn to_filter(f: ServiceFilterArgs) -> ServiceFilter {
    ServiceFilter {
        name: f.name,
        template_uid: f.template_uid,
        template_host: f.template_host,
        template_account: f.template_account,
        template_repo: f.template_repo,
        template_name: f.template_name,
        template_version: f.template_version,
    }
}

/// An argument schema in one line: `name: string (required), memory: integer = 1024`.
fn describe_schema(schema: &serde_json::Value) -> String {
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
        return schema.to_string();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    props
        .iter()
        .map(|(name, p)| {
            let mut s = name.clone();
            if let Some(t) = p.get("type") {
                s.push_str(&format!(
                    ": {}",
                    t.as_str().map(str::to_owned).unwrap_or(t.to_string())
                ));
            }
            if let Some(d) = p.get("default") {
                s.push_str(&format!(" = {d}"));
            }
            if required.contains(&name.as_str()) {
                s.push_str(" (required)");
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}
