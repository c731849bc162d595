//! The `zrobot` binary: the command line, glue over the library crates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use zrobot_core::store::MemoryStore;
use zrobot_core::{RepoId, Robot, RobotConfig};
use zrobot_lua::{LuaConfig, LuaEngine};

/// zrobot: life-cycle management with templates, services and task lists.
#[derive(Parser)]
#[command(name = "zrobot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with template repositories.
    #[command(subcommand)]
    Template(TemplateCommand),
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Load every template of a repository folder (holding `templates/<name>/`)
    /// and report each one, or why it cannot load. Exits 1 if any cannot.
    Check {
        /// The repository folder.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Template(TemplateCommand::Check { dir }) => check_templates(dir),
    }
}

fn check_templates(dir: PathBuf) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let robot = Robot::new(
            RobotConfig::default(),
            Arc::new(LuaEngine::new(LuaConfig::default())),
            Arc::new(MemoryStore::new()),
        );
        let load = robot.load_repository(&dir, &RepoId::local(&dir));
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
    })
}
