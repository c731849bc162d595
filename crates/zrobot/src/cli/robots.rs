//! `zrobot robot ...`: the robots this CLI knows, the current one, and what
//! a robot says about itself.

use std::process::ExitCode;

use anyhow::Result;
use comfy_table::Cell;
use serde_json::json;
use zrobot_client::{Client, Credentials};

use super::config::RobotEntry;
use super::context::{explain, failure, normalize_url, Ctx, Need, Secrets, Target, EXIT_USAGE};
use super::{output, RobotCommand};

pub async fn run(ctx: &mut Ctx, command: RobotCommand) -> Result<ExitCode> {
    match command {
        RobotCommand::Connect {
            name,
            url,
            jwt,
            god_token,
        } => connect(ctx, name, url, jwt, god_token).await,
        RobotCommand::List => list(ctx),
        RobotCommand::Use { name } => {
            if !ctx.config.robots.contains_key(&name) {
                return Err(unknown(ctx, &name));
            }
            ctx.config = ctx.file.update(|c| {
                c.current = Some(name.clone());
                Ok(c.clone())
            })?;
            if ctx.json {
                output::json(&json!({"current": name}))?;
            } else {
                println!("commands now go to robot `{name}`");
            }
            Ok(ExitCode::SUCCESS)
        }
        RobotCommand::Current => current(ctx),
        RobotCommand::Delete { name, force } => delete(ctx, &name, force),
        RobotCommand::Info => info(ctx).await,
    }
}

/// `robot current`: the name (and URL) commands go to when none is given.
fn current(ctx: &Ctx) -> Result<ExitCode> {
    let Some(name) = ctx.config.current.clone() else {
        return Err(failure(
            EXIT_USAGE,
            "no robot is current: `zrobot robot connect NAME URL` adds one and makes it current",
        ));
    };
    let url = ctx
        .config
        .robots
        .get(&name)
        .map(|e| e.url.clone())
        .unwrap_or_default();
    if ctx.json {
        output::json(&json!({"current": name, "url": url}))?;
    } else {
        println!("{name} {url}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `robot delete NAME`: forgets a connection. Secrets of services are kept
/// only here, so forgetting them needs `--force`.
fn delete(ctx: &mut Ctx, name: &str, force: bool) -> Result<ExitCode> {
    let Some(entry) = ctx.config.robots.get(name) else {
        return Err(unknown(ctx, name));
    };
    let kept = entry.secrets.len();
    if kept > 0 && !force {
        return Err(failure(
            EXIT_USAGE,
            format!(
                "robot `{name}` holds the secrets of {kept} service(s), kept nowhere else: deleting it loses them; \
                 pass --force to delete it anyway, or keep it"
            ),
        ));
    }
    ctx.config = ctx.file.update(|c| {
        c.robots.remove(name);
        if c.current.as_deref() == Some(name) {
            c.current = None;
        }
        Ok(c.clone())
    })?;
    if ctx.json {
        output::json(&json!({"deleted": name, "secrets_lost": kept}))?;
    } else {
        println!(
            "robot `{name}` forgotten{}{}",
            if kept > 0 {
                format!(", with the secrets of {kept} service(s)")
            } else {
                String::new()
            },
            if ctx.config.current.is_none() && !ctx.config.robots.is_empty() {
                "; no robot is current now: `zrobot robot use NAME`"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn connect(
    ctx: &mut Ctx,
    name: String,
    url: String,
    jwt: Option<String>,
    god_token: Option<String>,
) -> Result<ExitCode> {
    if name.contains("://") || name.trim().is_empty() {
        return Err(failure(
            EXIT_USAGE,
            format!("`{name}` is not a robot name: the name comes first, then the URL (zrobot robot connect local http://127.0.0.1:6600)"),
        ));
    }
    let url = normalize_url(&url);
    // Refuse an address the client cannot use before storing it.
    let probe = Client::new(&url, Credentials::default())
        .map_err(|e| failure(EXIT_USAGE, e.to_string()))?;
    // The robot may not run yet: say so, but remember it anyway.
    let unreachable = probe.robot_info().await.err();
    let entry = ctx.file.update(|c| {
        let entry = c.robots.entry(name.clone()).or_default();
        entry.url = url.clone();
        // The credentials are exactly those given now; the service secrets
        // stay, since they belong to the services, not to the connection.
        entry.jwt = jwt;
        entry.god_token = god_token;
        let entry = entry.clone();
        c.current = Some(name.clone());
        Ok(entry)
    })?;
    ctx.config = ctx.file.load()?;
    if ctx.json {
        output::json(&robot_json(&name, &entry, true))?;
    } else {
        println!(
            "robot `{name}` ({url}) saved in {} and made current",
            ctx.file.path().display()
        );
    }
    if let Some(e) = unreachable {
        let target = Target {
            name: Some(name),
            url,
            entry,
        };
        eprintln!("warning: saved, but {}", explain(&target, e, Need::Anyone));
    }
    Ok(ExitCode::SUCCESS)
}

fn credentials_of(e: &RobotEntry) -> &'static str {
    match (&e.god_token, &e.jwt) {
        (Some(_), _) => "god token",
        (None, Some(_)) => "jwt",
        (None, None) => "none",
    }
}

/// A robot of the config as `--json` shows it: never a token or secret.
fn robot_json(name: &str, e: &RobotEntry, current: bool) -> serde_json::Value {
    json!({
        "name": name,
        "url": e.url,
        "current": current,
        "credentials": credentials_of(e),
        "services": e.secrets.iter().map(|(g, s)| json!({"guid": g, "name": s.name})).collect::<Vec<_>>(),
    })
}

fn list(ctx: &Ctx) -> Result<ExitCode> {
    let current = ctx.config.current.as_deref();
    if ctx.json {
        let all: Vec<_> = ctx
            .config
            .robots
            .iter()
            .map(|(n, e)| robot_json(n, e, Some(n.as_str()) == current))
            .collect();
        output::json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    if ctx.config.robots.is_empty() {
        println!("no robot yet: add one with `zrobot robot connect NAME URL`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = output::table(&["", "NAME", "URL", "CREDENTIALS", "SECRETS"]);
    for (n, e) in &ctx.config.robots {
        t.add_row(vec![
            Cell::new(if Some(n.as_str()) == current { "*" } else { "" }),
            Cell::new(n),
            Cell::new(&e.url),
            Cell::new(credentials_of(e)),
            Cell::new(e.secrets.len()),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

async fn info(ctx: &Ctx) -> Result<ExitCode> {
    let target = ctx.target()?;
    let client = ctx.client(&target, Secrets::None)?;
    let info = client
        .robot_info()
        .await
        .map_err(|e| explain(&target, e, Need::Anyone))?;
    let metrics = client
        .robot_metrics()
        .await
        .map_err(|e| explain(&target, e, Need::Anyone))?;
    if ctx.json {
        output::json(&json!({
            "name": target.name,
            "url": target.url,
            "info": info,
            "metrics": metrics,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mib = |b: u64| format!("{} MiB", b / (1024 * 1024));
    let mut t = output::table(&[]);
    t.add_row(vec!["robot".to_owned(), target.label()]);
    t.add_row(vec![
        "credentials".to_owned(),
        credentials_of(&target.entry).to_owned(),
    ]);
    t.add_row(vec![
        "storage".to_owned(),
        if info.storage_healthy {
            "healthy".to_owned()
        } else {
            "FAILING: its last writes did not go through".to_owned()
        },
    ]);
    let or_none = |s: &str| {
        if s.is_empty() {
            "none".to_owned()
        } else {
            s.to_owned()
        }
    };
    t.add_row(vec![
        "config repository".to_owned(),
        or_none(&info.repositories.config.url),
    ]);
    t.add_row(vec![
        "data repository".to_owned(),
        match &info.repositories.data.last_pushed {
            Some(at) => format!("{} (pushed {at})", or_none(&info.repositories.data.url)),
            None => or_none(&info.repositories.data.url),
        },
    ]);
    t.add_row(vec!["services".to_owned(), metrics.nr_services.to_string()]);
    t.add_row(vec![
        "host cpu".to_owned(),
        format!(
            "{:.0}% user, {:.0}% system, {:.0}% idle",
            metrics.cpu.user, metrics.cpu.system, metrics.cpu.idle
        ),
    ]);
    t.add_row(vec![
        "host memory".to_owned(),
        format!(
            "{} total, {} free",
            mib(metrics.memory.total),
            mib(metrics.memory.free)
        ),
    ]);
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

fn unknown(ctx: &Ctx, name: &str) -> anyhow::Error {
    let known: Vec<&str> = ctx.config.robots.keys().map(String::as_str).collect();
    failure(
        EXIT_USAGE,
        if known.is_empty() {
            format!("no robot named `{name}`: add it with `zrobot robot connect {name} URL`")
        } else {
            format!(
                "no robot named `{name}` (known: {}); add it with `zrobot robot connect {name} URL`",
                known.join(", ")
            )
        },
    )
}
