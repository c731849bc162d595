//! `zrobot template ...`: check a repository folder locally, list the
//! robot's templates, add or check out template repositories.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use comfy_table::Cell;
use zrobot_client::{Template, TemplateRepository};
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
            client
                .checkout_template_repo(&repo)
                .await
                .map_err(|e| explain(&target, e, Need::Admin))?;
            if ctx.json {
                output::json(&repo)?;
            } else {
                println!(
                    "{} now serves {} at {}; its services move to the newest versions",
                    target.label(),
                    repo.url,
                    repo.branch.as_deref().unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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
