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
    if let TemplateCommand::Test { dir, filter } = &command {
        return Ok(crate::template_tests::run(dir, filter.as_deref()).await);
    }
    if let TemplateCommand::New {
        name,
        dir,
        consumer_of,
    } = &command
    {
        return scaffold(dir, name, consumer_of.as_deref());
    }
    let ctx = &ctx()?;
    let target = ctx.target()?;
    let client = ctx.client(&target, Secrets::None)?;
    match command {
        TemplateCommand::Check { dir } => Ok(check(&dir)),
        TemplateCommand::Test { dir, filter } => {
            Ok(crate::template_tests::run(&dir, filter.as_deref()).await)
        }
        TemplateCommand::New {
            name,
            dir,
            consumer_of,
        } => scaffold(&dir, &name, consumer_of.as_deref()),
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
    let mut t = output::table(&["UID", "NAME", "VERSION", "COMMIT"]);
    for tpl in templates {
        let commit = tpl.commit.as_deref().unwrap_or("-");
        t.add_row(vec![
            Cell::new(&tpl.uid),
            Cell::new(&tpl.name),
            Cell::new(&tpl.version),
            Cell::new(commit.get(..12).unwrap_or(commit)),
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

const SCAFFOLD_YAML: &str = r#"# The template NAME. Reference: docs/templates.md.
version: 0.1.0
description: what a NAME is (say it for the next reader)

# JSON Schema of a service's data. Defaults fill what `service create`
# leaves out; the data must match when a task ends, or its changes are
# dropped.
data:
  type: object
  properties:
    greeting: {type: string, default: hello}
DATA_EXTRA
# Actions: policies (timeout, retry, recurring) and the JSON Schema of their
# arguments. An action without `args:` takes any arguments.
actions:
  hello:
    timeout: 30
    args:
      type: object
      properties: {who: {type: string, default: world}}
ACTIONS_EXTRA
"#;

const SCAFFOLD_LUA: &str = r#"-- The code of NAME. Every function below whose name does not start with `_`
-- is an action, called as fn(self, args), but for the hooks: init(self),
-- validate(self), update_data(self, new_data) and migrate(self,
-- from_version). `self.data` is saved when an action ends `ok`; what an
-- action returns is its task's result.
local t = {}

-- Raise an error when the data cannot work: the service then runs no task
-- until it passes (it is tried again).
function t.validate(self)
  if self.data.greeting == "" then error("greeting must not be empty") end
end

function t.hello(self, args)
  self.log:info(self.data.greeting .. " " .. args.who)
  self.state:set("hello", args.who, "ok")
  return {said = self.data.greeting .. " " .. args.who}
end
USE_ACTION
return t
"#;

const CONSUMER_DATA: &str = r#"    producer: {type: string, default: PRODUCER, description: the PRODUCER service to use}
    # The robot that service is on, by the name this robot knows it by
    # (`zrobot server start --robot NAME=URL`); empty: this robot.
    robot: {type: string, default: ""}
"#;
const CONSUMER_ACTIONS: &str = r#"  use:
    timeout: 120
    args:
      type: object
      required: [action]
      properties:
        action: {type: string, description: the action of the PRODUCER service to run}
        args: {type: object, default: {}}
"#;
const CONSUMER_LUA: &str = r#"
-- Asks the PRODUCER service named in self.data.producer (made if missing),
-- on this robot or on the robot named in self.data.robot, to run an action,
-- and waits for its result; its error becomes this one's. The services of
-- another robot have the same calls as this robot's.
function t.use(self, args)
  local services = robot.services
  if self.data.robot ~= "" then
    services = robot.robots[self.data.robot].services
  end
  local producer = services:find_or_create("PRODUCER", self.data.producer, {})
  return producer:schedule_action(args.action, args.args):wait(100)
end
"#;

const SCAFFOLD_TEST: &str = r#"# The tests of NAME: `zrobot template test REPO` runs them, each test in a
# robot of its own, without a server. The format: docs/templates.md,
# "Testing a template".

# Made afresh before each test, in order.
services:
  - {template: NAME, name: first, data: {greeting: hi}}

tests:
  - name: hello greets, logs and marks the state table
    steps:
      - service: first
        action: hello
        args: {who: you}
        expect:
          result: {said: hi you}     # a mapping checks the keys it names
          state: {hello: {you: ok}}
          log: ["hi you"]

  - name: who defaults to world
    steps:
      - service: first
        action: hello
        expect:
          result: {said: hi world}

  - name: an empty greeting fails validate
    steps:
      - create: {template: NAME, name: mute, data: {greeting: ""}}
        expect:
          error: greeting must not be empty
CONSUMER_TEST"#;

const CONSUMER_TEST: &str = r#"
  # The PRODUCER service is on the robot `other`, a stub that answers as told,
  # reached over the same REST calls as in production. To run this
  # repository's own PRODUCER code instead, drop `robots:` and `robot: other`.
  - name: use asks the PRODUCER and gives back its answer
    robots:
      other:
        services:
          - template: PRODUCER
            name: the-PRODUCER
            actions:
              hello: {result: {said: hello from the stub}}
    services:
      - {template: NAME, name: user, data: {producer: the-PRODUCER, robot: other}}
    steps:
      - service: user
        action: use
        args: {action: hello, args: {who: me}}
        expect:
          result: {said: hello from the stub}
          scheduled:
            - {robot: other, service: the-PRODUCER, action: hello, args: {who: me}}
"#;

/// `template new`: writes a template that `template check` accepts, and
/// changes nothing if the folder is there already.
fn scaffold(repo: &Path, name: &str, consumer_of: Option<&str>) -> Result<ExitCode> {
    let valid = |n: &str| {
        !n.is_empty()
            && n.len() <= 128
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    for n in std::iter::once(name).chain(consumer_of) {
        if !valid(n) {
            return Err(super::context::failure(
                super::context::EXIT_USAGE,
                format!(
                    "`{n}` is not a template name: use lower-case letters, digits, `_` and `-`"
                ),
            ));
        }
    }
    let dir = repo.join("templates").join(name);
    if dir.exists() {
        anyhow::bail!(
            "{} exists already: pick another name, or edit it",
            dir.display()
        );
    }
    let (data, actions, lua, test) = match consumer_of {
        Some(p) => (
            CONSUMER_DATA.replace("PRODUCER", p),
            CONSUMER_ACTIONS.replace("PRODUCER", p),
            CONSUMER_LUA.replace("PRODUCER", p),
            CONSUMER_TEST.replace("PRODUCER", p),
        ),
        None => (String::new(), String::new(), String::new(), String::new()),
    };
    let yaml = SCAFFOLD_YAML
        .replace("DATA_EXTRA\n", &data)
        .replace("ACTIONS_EXTRA\n", &actions)
        .replace("NAME", name);
    let code = SCAFFOLD_LUA
        .replace("USE_ACTION\n", &lua)
        .replace("NAME", name);
    let test = SCAFFOLD_TEST
        .replace("CONSUMER_TEST", &test)
        .replace("NAME", name)
        .replace("REPO", &repo.display().to_string());
    std::fs::create_dir_all(dir.join("tests"))
        .map_err(|e| anyhow::anyhow!("cannot make {}: {e}", dir.display()))?;
    std::fs::write(dir.join("template.yaml"), yaml)?;
    std::fs::write(dir.join(format!("{name}.lua")), code)?;
    std::fs::write(dir.join("tests").join(format!("{name}.yaml")), test)?;
    println!(
        "made {}: template.yaml, {name}.lua and tests/{name}.yaml",
        dir.display()
    );
    if let Some(p) = consumer_of {
        if !repo.join("templates").join(p).is_dir() {
            println!(
                "note: {} has no template `{p}` yet: `zrobot template new {p} --dir {}` makes one",
                repo.display(),
                repo.display()
            );
        }
    }
    println!(
        "test it with `zrobot template test {}` (it checks the templates first); a robot loads it from git, so commit it",
        repo.display()
    );
    Ok(ExitCode::SUCCESS)
}
