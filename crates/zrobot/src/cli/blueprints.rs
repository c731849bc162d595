//! `zrobot blueprint execute FILE [--wait]`: sends a YAML blueprint, keeps
//! the secrets of the services it created, and follows its tasks.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use comfy_table::Cell;
use zrobot_client::{BlueprintResult, Client};

use super::context::{explain, Ctx, Need, Secrets, Target};
use super::{follow, output, values};

pub async fn execute(ctx: &mut Ctx, file: &Path, wait: bool) -> Result<ExitCode> {
    let target = ctx.target()?;
    let client = ctx.client(&target, Secrets::None)?;
    let result = send(&client, &target, file).await?;
    // Secrets are shown once: keep them before following anything.
    let created: Vec<_> = result
        .services
        .iter()
        .map(|s| (s.service.guid, s.service.name.clone(), s.secret.clone()))
        .collect();
    ctx.store_secrets(&target, &created)?;
    if !wait {
        if ctx.json {
            output::json(&result)?;
        } else {
            show_created(&result);
            if !result.tasks.is_empty() {
                println!("{}", output::tasks_table(&result.tasks));
                println!("follow them with `zrobot blueprint execute --wait`, or `zrobot task get SERVICE TASK`");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !ctx.json {
        show_created(&result);
    }
    // The tasks may be on services created now or before: each is followed
    // with the secret of its own service.
    let target = ctx.target()?;
    let follower = ctx.client(&target, Secrets::None)?;
    let secrets = &target.entry.secrets;
    let followed = follow::follow_with(&follower, result.tasks.clone(), |guid| {
        secrets.get(&guid).map(|s| s.secret.clone())
    })
    .await;
    if ctx.json {
        output::json(&BlueprintResult {
            services: result.services,
            tasks: followed.iter().map(|f| f.last().clone()).collect(),
        })?;
        Ok(follow::code(&followed))
    } else {
        Ok(follow::summary(&followed))
    }
}

/// Reads the blueprint (YAML, or JSON) and sends it as `{content: ...}`.
pub async fn send(client: &Client, target: &Target, file: &Path) -> Result<BlueprintResult> {
    let content = values::read_file(file).context("cannot read the blueprint")?;
    if !content.is_object() {
        anyhow::bail!(
            "{} is not a blueprint: it must be a mapping with `services` and/or `actions`",
            file.display()
        );
    }
    client
        .execute_blueprint(content)
        .await
        .map_err(|e| explain(target, e, Need::User))
        .with_context(|| format!("blueprint {}", file.display()))
}

fn show_created(result: &BlueprintResult) {
    if result.services.is_empty() {
        println!("no service created (those named exist already, and received their data)");
        return;
    }
    let mut t = output::table(&["CREATED SERVICE", "GUID", "TEMPLATE"]);
    for s in &result.services {
        t.add_row(vec![
            Cell::new(&s.service.name),
            Cell::new(s.service.guid),
            Cell::new(&s.service.template),
        ]);
    }
    println!("{t}");
    println!(
        "{} service(s) created, their secrets stored; {} task(s) scheduled",
        result.services.len(),
        result.tasks.len()
    );
}
