//! The `zrobot` binary: the command line, glue over the library crates.
//! `main` maps every error to a message and an exit code scripts can trust.

mod paths;
mod server;

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
    /// Run a robot.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Work with template repositories.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// The god token of a robot started with --god.
    #[command(subcommand)]
    Godtoken(GodtokenCommand),
}

#[derive(Subcommand)]
enum ServerCommand {
    /// Start a robot and serve its API until SIGINT or SIGTERM.
    Start(server::StartArgs),
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

#[derive(Subcommand)]
enum GodtokenCommand {
    /// Print the god token of the robot using this data directory.
    Get {
        /// The robot's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(ServerCommand::Start(args)) => {
                server::start(args).await.map(|_| ExitCode::SUCCESS)
            }
            Command::Template(TemplateCommand::Check { dir }) => Ok(check_templates(dir)),
            Command::Godtoken(GodtokenCommand::Get { data_dir }) => {
                let dir = data_dir.unwrap_or_else(paths::default_data_dir);
                paths::read_god_token(&dir).map(|t| {
                    println!("{t}");
                    ExitCode::SUCCESS
                })
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn check_templates(dir: PathBuf) -> ExitCode {
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
}
