//! The command line: the clap tree of every command, and the dispatch of the
//! client commands (everything but `server start`) to their modules.
//!
//! # Layout
//!
//! - `config`: the connection config file (robots, credentials, secrets).
//! - `context`: which robot, which credentials, names to guids, errors to
//!   messages and exit codes.
//! - `values`: `key=value` data and arguments.
//! - `output`: tables and JSON.
//! - `robots`, `templates`, `services`, `tasks`, `blueprints`, `webhooks`:
//!   one module per branch of the command tree.
//! - `follow`: waiting on tasks with progress, and the summary.
//! - `demo`: two robots and the example blueprint, for first contact.

mod blueprints;
pub mod config;
pub mod context;
mod demo;
mod events;
mod follow;
mod graph;
mod output;
mod robots;
mod services;
mod tasks;
mod templates;
mod values;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::{paths, server};
use context::Ctx;
use values::KeyValue;

/// zrobot: life-cycle management with templates, services and task lists.
#[derive(Parser)]
#[command(name = "zrobot", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct GlobalArgs {
    /// The robot to talk to: a name from `zrobot robot list`, or a URL.
    /// Overrides ZROBOT_URL, which overrides the current robot. Not global:
    /// `server start` has a `--robot NAME=URL` of its own, for the robots a
    /// robot reaches; each client command takes it after its name too.
    #[arg(long, value_name = "NAME_OR_URL")]
    pub robot: Option<String>,
    /// Print the API's JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `--robot` given after a client command's name (`zrobot service list
/// --robot b`): global to that command's branch only.
#[derive(Args, Clone, Default)]
pub struct At {
    /// The robot to talk to: a name from `zrobot robot list`, or a URL.
    /// Overrides ZROBOT_URL, which overrides the current robot.
    #[arg(long = "robot", global = true, value_name = "NAME_OR_URL")]
    pub robot: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a robot.
    #[command(subcommand)]
    Server(ServerCommand),
    /// The robots this CLI knows, and which one commands go to.
    Robot {
        #[command(flatten)]
        at: At,
        #[command(subcommand)]
        command: RobotCommand,
    },
    /// Templates of the robot, and template repositories.
    Template {
        #[command(flatten)]
        at: At,
        #[command(subcommand)]
        command: TemplateCommand,
    },
    /// Services: create, inspect, delete.
    Service {
        #[command(flatten)]
        at: At,
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Tasks of a service's task list.
    Task {
        #[command(flatten)]
        at: At,
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Services and actions from a YAML file.
    Blueprint {
        #[command(flatten)]
        at: At,
        #[command(subcommand)]
        command: BlueprintCommand,
    },
    /// The robot's events: services created, tasks scheduled, started and
    /// finished, state changes, log lines; with --follow, as they happen.
    Events {
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        args: events::EventsArgs,
    },
    /// The robot's pending work: running and waiting tasks, what each waits
    /// on (here or on another robot) and what it is queued behind.
    Graph {
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        args: graph::GraphArgs,
    },
    /// URLs told about every failed task.
    Webhook {
        #[command(flatten)]
        at: At,
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// The god token of a robot started with --god.
    #[command(subcommand)]
    Godtoken(GodtokenCommand),
    /// Print a shell completion script: `zrobot completions bash > /etc/bash_completion.d/zrobot`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// First contact: start two robots on loopback with the example
    /// templates, execute the demo blueprint, whose services call each
    /// other across the two robots, and show what happened.
    Demo(demo::DemoArgs),
}

#[derive(Subcommand)]
pub enum ServerCommand {
    /// Start a robot and serve its API until SIGINT or SIGTERM.
    Start(server::StartArgs),
}

#[derive(Subcommand)]
pub enum RobotCommand {
    /// Remember a robot under a name, with its credentials, and make it current.
    Connect {
        name: String,
        /// http://HOST:PORT or https://...
        url: String,
        /// A JWT of a member of the robot's admin or user organization.
        #[arg(long, value_name = "TOKEN", conflicts_with = "god_token")]
        jwt: Option<String>,
        /// The god token of a robot started with --god (`zrobot godtoken get`).
        #[arg(long, value_name = "TOKEN")]
        god_token: Option<String>,
    },
    /// The robots this CLI knows.
    List,
    /// Make a known robot the current one.
    Use { name: String },
    /// Print the name of the current robot (and its URL).
    Current,
    /// Forget a robot: its URL, credentials and the service secrets kept for
    /// it. The robot and its services are untouched.
    Delete {
        name: String,
        /// Forget it even if secrets of its services are kept (they are lost:
        /// only their creator ever had them).
        #[arg(long)]
        force: bool,
    },
    /// The current robot: address, repositories, storage, host figures.
    Info,
}

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Load every template of a repository folder (holding `templates/<name>/`)
    /// and report each one, or why it cannot load. Exits 1 if any cannot.
    Check {
        /// The repository folder.
        dir: PathBuf,
    },
    /// Start a template: `templates/NAME/template.yaml` and `NAME.lua` in a
    /// repository folder, with comments, that `template check` accepts.
    New {
        /// The template's name (lower-case letters, digits, `_` and `-`).
        name: String,
        /// The repository folder (made if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Make it a consumer of this template of the same repository: a
        /// `use` action that asks a service of it and waits for the result.
        #[arg(long, value_name = "TEMPLATE")]
        consumer_of: Option<String>,
    },
    /// Run a repository's template tests (`templates/<name>/tests/*.yaml`)
    /// without a server: each test in a throwaway robot of this process, on
    /// the real Lua engine and an in-memory store, other robots stubbed.
    /// Exits 1 if any fails. The format: docs/templates.md, "Testing a template".
    Test {
        /// The repository folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Run only the tests whose `template/file: name` contains this.
        #[arg(long)]
        filter: Option<String>,
    },
    /// The templates the robot has loaded.
    List,
    /// Clone a template repository into the robot and load its templates (admin).
    Add {
        /// A git URL, with an optional #branch, #tag or #commit.
        #[arg(value_name = "URL[#ref]")]
        url: String,
    },
    /// Check out another revision of a template repository; services move to
    /// the newest versions (admin). Prints what each service did; exits 1 if
    /// any failed to move.
    Checkout {
        url: String,
        /// A branch, tag or commit.
        #[arg(value_name = "REF")]
        reference: String,
    },
}

/// The filter keys of `GET /services`.
#[derive(Args, Debug, Clone, Default)]
pub struct ServiceFilterArgs {
    #[arg(long)]
    pub name: Option<String>,
    /// A full template UID or any suffix of it (`node`, `node/1.2.0`).
    #[arg(long, value_name = "UID")]
    pub template_uid: Option<String>,
    #[arg(long, value_name = "HOST")]
    pub template_host: Option<String>,
    #[arg(long, value_name = "ACCOUNT")]
    pub template_account: Option<String>,
    #[arg(long, value_name = "REPO")]
    pub template_repo: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub template_name: Option<String>,
    #[arg(long, value_name = "VERSION")]
    pub template_version: Option<String>,
}

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// The services you may see (created by this CLI, public, or all for an admin).
    List(ServiceFilterArgs),
    /// One service, by name or guid.
    Get {
        #[arg(value_name = "NAME|GUID")]
        service: String,
    },
    /// Create a service; its secret is stored in the CLI config.
    Create {
        /// A template: any unambiguous suffix of its UID (`node`, `node/1.0.0`).
        template: String,
        name: String,
        /// A data field, its value read as YAML (`port=22`, `tags=[a,b]`,
        /// `capacity.memory=1024`); repeatable, over --data-file.
        #[arg(short = 'd', long = "data", value_name = "KEY=VALUE", value_parser = values::parse_key_value)]
        data: Vec<KeyValue>,
        /// The data as a YAML or JSON file.
        #[arg(long, value_name = "FILE")]
        data_file: Option<PathBuf>,
        /// List the service to every caller.
        #[arg(long)]
        public: bool,
    },
    /// Delete a service (its on_delete actions run first).
    Delete {
        #[arg(value_name = "NAME|GUID")]
        service: String,
    },
    /// The actions of a service and their arguments.
    Actions {
        #[arg(value_name = "NAME|GUID")]
        service: String,
    },
    /// Remove a tag, or a whole category, from a service's state table
    /// (an error a fix made moot, say).
    ClearState {
        #[arg(value_name = "NAME|GUID")]
        service: String,
        category: String,
        /// The tag; without it, the whole category.
        tag: Option<String>,
    },
    /// A service's log.
    Logs {
        #[arg(value_name = "NAME|GUID")]
        service: String,
        /// Keep printing new lines until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Queue an action on a service.
    Schedule {
        #[arg(value_name = "NAME|GUID")]
        service: String,
        action: String,
        /// An argument, its value read as YAML; repeatable, over --args-file.
        #[arg(short = 'a', long = "arg", value_name = "KEY=VALUE", value_parser = values::parse_key_value)]
        args: Vec<KeyValue>,
        /// The arguments as a YAML or JSON file.
        #[arg(long, value_name = "FILE")]
        args_file: Option<PathBuf>,
        /// Follow the task to its end; exit 1 if it fails.
        #[arg(long)]
        wait: bool,
    },
    /// A service's waiting and running tasks.
    List {
        #[arg(value_name = "NAME|GUID")]
        service: String,
        /// Finished tasks too.
        #[arg(long)]
        all: bool,
    },
    /// One task.
    Get {
        #[arg(value_name = "NAME|GUID")]
        service: String,
        /// The task's guid, the start of it (as `task list` shows it), or
        /// `last` (the latest scheduled).
        #[arg(value_name = "GUID|PREFIX|last")]
        task: String,
        /// Print only the result: a text as it is, anything else as JSON;
        /// exit 1 if the task failed or is not done.
        #[arg(long)]
        raw: bool,
    },
    /// Cancel a waiting task.
    Cancel {
        #[arg(value_name = "NAME|GUID")]
        service: String,
        /// The task's guid, the start of it, or `last`.
        #[arg(value_name = "GUID|PREFIX|last")]
        task: String,
    },
}

#[derive(Subcommand)]
pub enum BlueprintCommand {
    /// Send a blueprint to the robot; the secrets of the services it creates are stored.
    Execute {
        /// The blueprint, YAML.
        file: PathBuf,
        /// Follow every task it scheduled; exit 1 if any fails.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Tell this URL about every failed task (admin): its eco as JSON, or a
    /// chat message with `--format slack` (an incoming webhook's URL) or
    /// `--format telegram` (`https://api.telegram.org/bot<token>/sendMessage?chat_id=<chat>`).
    Add {
        url: String,
        #[arg(long, value_parser = ["slack", "telegram"])]
        format: Option<String>,
    },
    /// The webhooks of the robot (admin).
    List,
    /// Remove a webhook (admin).
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum GodtokenCommand {
    /// Print the god token of the robot using this data directory.
    Get {
        /// The robot's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

impl Cli {
    /// The log level when `RUST_LOG` says none: `warn` for the commands that
    /// run robots of their own only to check templates, whose every step
    /// would log otherwise; `info` for the rest.
    pub fn default_log_level(&self) -> &'static str {
        match &self.command {
            Command::Template {
                command: TemplateCommand::Test { .. } | TemplateCommand::Check { .. },
                ..
            } => "warn",
            _ => "info",
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let Cli { global, command } = cli;
    // Only client commands read the config: a broken one must not keep a
    // robot from starting. `--robot` after the command wins over before it.
    let json = global.json;
    let ctx = |at: At| Ctx::new(json, at.robot.or(global.robot));
    match command {
        Command::Server(ServerCommand::Start(args)) => {
            server::start(args).await.map(|_| ExitCode::SUCCESS)
        }
        Command::Godtoken(GodtokenCommand::Get { data_dir }) => {
            let dir = data_dir.unwrap_or_else(paths::default_data_dir);
            let token = paths::read_god_token(&dir)?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "zrobot", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Template { at, command } => templates::run(command, || ctx(at)).await,
        Command::Robot { at, command } => robots::run(&mut ctx(at)?, command).await,
        Command::Service { at, command } => services::run(&mut ctx(at)?, command).await,
        Command::Task { at, command } => tasks::run(&ctx(at)?, command).await,
        Command::Blueprint {
            at,
            command: BlueprintCommand::Execute { file, wait },
        } => blueprints::execute(&mut ctx(at)?, &file, wait).await,
        Command::Webhook { at, command } => webhooks::run(&ctx(at)?, command).await,
        Command::Events { at, args } => events::run(&ctx(at)?, args).await,
        Command::Graph { at, args } => graph::run(&ctx(at)?, args).await,
    }
}
