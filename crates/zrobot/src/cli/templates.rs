//! `zrobot template ...`: check a repository folder locally, list the
//! robot's templates, add or check out template repositories.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use comfy_table::Cell;
use zrobot_client::{CheckoutReport, MoveOutcome, Template, TemplateRepository};
use zrobot_core::store::MemoryStore;
use zrobot_core::{RepoId, Robot, RobotConfig};
use zrobot_lua::{LuaConfig, LuaEngine};

use super::context::{explain, Ctx, Need, Secrets};
use super::{output, TemplateCommand};

/// Runs a template command; `ctx` is made only for those that talk to a
/// robot, so `template check` works without any config.
pub async fn run(command: TemplateCommand, ctx: impl FnOnce() -> Result<Ctx>) -> Result<ExitCode> {
    if let TemplateCommand::Check { dir } = &command {
        return Ok(check(dir));
    }
    let ctx = &ctx()?;
    let target = ctx.target()?;
    let client = ctx.client(&target, Secrets::None)?;
    match command {
        TemplateCommand::Check { dir } => Ok(check(&dir)),
        TemplateCommand::List => {
            let templates = client
                .templates()
                .await
                .map_err(|e| explain(&target, e, Need::User))?;
            show(ctx, &templates)
        }
        TemplateCommand::Add { url } => {
            // `URL#ref`: the robot's API takes the ref apart, as `branch`.
            let (url, branch) = match url.split_once('#') {
                Some((u, r)) => (u.to_owned(), Some(r.to_owned())),
                None => (url, None),
            };
            let added = client
                .add_template_repo(&TemplateRepository { url, branch })
                .await
                .map_err(|e| explain(&target, e, Need::Admin))?;
            show(ctx, &added)
        }
        TemplateCommand::Checkout { url, reference } => {
            let repo = TemplateRepository {
                url,
                branch: Some(reference),
            };
            let report = client
                .checkout_template_repo_report(&repo)
                .await
                .map_err(|e| explain(&target, e, Need::Admin))?;
            checked_out(ctx, &target.label(), &repo, &report)
        }
    }
}

/// Prints what a checkout did to each service; 1 if any failed to move.
fn checked_out(
    ctx: &Ctx,
    robot: &str,
    repo: &TemplateRepository,
    report: &CheckoutReport,
) -> Result<ExitCode> {
    let failed = report
        .services
        .iter()
        .filter(|m| m.outcome == MoveOutcome::Failed)
        .count();
    if ctx.json {
        output::json(report)?;
    } else {
        println!(
            "{robot} now serves {} at {} (commit {})",
            repo.url,
            repo.branch.as_deref().unwrap_or_default(),
            report.commit.get(..12).unwrap_or(&report.commit)
        );
        for m in &report.services {
            match m.outcome {
                MoveOutcome::Moved => println!("moved   {}: {} -> {}", m.service, m.from, m.to),
                MoveOutcome::Failed => println!(
                    "FAILED  {}: stays on {}; moving to {} failed: {}",
                    m.service,
                    m.from,
                    m.to,
                    m.why.as_deref().unwrap_or("no reason given")
                ),
                MoveOutcome::Newest => println!("stayed  {}: already on {}", m.service, m.to),
                MoveOutcome::Reloaded => println!(
                    "reloaded {}: runs the new code of {} (its files changed, its version did not)",
                    m.service, m.to
                ),
            }
        }
        let moved = report
            .services
            .iter()
            .filter(|m| m.outcome == MoveOutcome::Moved)
            .count();
        println!(
            "{moved} service(s) moved, {failed} failed to move{}",
            if failed > 0 {
                "; see `zrobot service logs NAME` for each, fix the template and check out again"
            } else {
                ""
            }
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn show(ctx: &Ctx, templates: &[Template]) -> Result<ExitCode> {
    if ctx.json {
        output::json(&templates)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = output::table(&["UID", "NAME", "VERSION"]);
    for tpl in templates {
        t.add_row(vec![
            Cell::new(&tpl.uid),
            Cell::new(&tpl.name),
            Cell::new(&tpl.version),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// Loads every template of a repository folder and reports each, or why it
/// cannot load; 1 if any cannot.
pub fn check(dir: &Path) -> ExitCode {
    let robot = Robot::new(
        RobotConfig::default(),
        Arc::new(LuaEngine::new(LuaConfig::default())),
        Arc::new(MemoryStore::new()),
    );
    let load = robot.load_repository(dir, &RepoId::local(dir));
    for t in &load.templates {
        println!("ok     {}  actions: {}", t.uid, t.actions().join(", "));
        let open: Vec<String> = t
            .actions()
            .iter()
            .filter(|a| t.policy(a).args.is_none())
            .map(|a| a.to_string())
            .collect();
        if !open.is_empty() {
            println!(
                "note   {}: {} {} any arguments (no `args:` schema in template.yaml): a misspelt argument goes unnoticed",
                t.uid,
                open.join(", "),
                if open.len() == 1 { "takes" } else { "take" }
            );
        }
    }
    for e in &load.errors {
        println!("error  {e}");
    }
    if load.errors.is_empty() {
        println!(
            "{} template(s) loaded from {}",
            load.templates.len(),
            dir.display()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "{} template(s) loaded, {} could not be loaded",
            load.templates.len(),
            load.errors.len()
        );
        ExitCode::from(1)
    }
}
