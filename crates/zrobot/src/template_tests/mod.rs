//! `zrobot template test`: runs a repository's template tests
//! (`templates/<name>/tests/*.yaml`) without a server, each test in a robot
//! of its own in this process, on the real Lua engine and an in-memory
//! store, with the other robots it names stubbed (`stub`).
//!
//! # Layout
//!
//! - `spec`: the test file format.
//! - `matching`: how an expected value matches an actual one.
//! - `stub`: robots whose services answer as a test declares.
//! - here: finding the tests, running their steps, and the report.

mod matching;
mod spec;
mod stub;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serde_saphyr::Spanned;
use zrobot_core::robot::NewService;
use zrobot_core::store::MemoryStore;
use zrobot_core::{Observer, RepoId, Robot, RobotConfig, Service, TaskRecord, TaskState};
use zrobot_lua::{LuaConfig, LuaEngine};

use spec::{ScheduledSpec, ServiceSpec, Step, StepKind, StubRobot, TestFile};

/// How long a step may take when it says nothing.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The most differences told of one expectation.
const MAX_DIFFERENCES: usize = 10;

/// One test of a file, with what its file gives every test.
struct Case {
    /// `template/file: name`, what `--filter` matches.
    label: String,
    /// The file, relative to the repository.
    file: PathBuf,
    line: u64,
    services: Vec<ServiceSpec>,
    robots: BTreeMap<String, StubRobot>,
    steps: Vec<Spanned<Step>>,
}

/// What was found under `templates/*/tests/`.
#[derive(Default)]
struct Found {
    cases: Vec<Case>,
    /// Files that are not test files: `(file, why)`.
    broken: Vec<(PathBuf, String)>,
}

/// Runs the tests of the repository folder `root` whose label contains
/// `filter`; exits 1 if any fails, or if a template does not load.
pub async fn run(root: &Path, filter: Option<&str>) -> ExitCode {
    let started = Instant::now();
    let check = test_robot(root);
    if !check.1.is_empty() {
        for e in &check.1 {
            println!("error  {e}");
        }
        println!(
            "{} template(s) could not be loaded: fix them first (`zrobot template check {}`)",
            check.1.len(),
            root.display()
        );
        return ExitCode::from(1);
    }
    check.0.shutdown(Duration::ZERO, Duration::ZERO).await;
    let found = find(root);
    let total = found.cases.len() + found.broken.len();
    if total == 0 {
        println!(
            "no tests in {}: a template's tests are YAML files in templates/<name>/tests/ (see docs/templates.md, \"Testing a template\")",
            root.display()
        );
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<&Case> = found
        .cases
        .iter()
        .filter(|c| filter.is_none_or(|f| c.label.contains(f)))
        .collect();
    let filtered = found.cases.len() - chosen.len();
    println!(
        "\nrunning {} test{}",
        chosen.len() + found.broken.len(),
        if chosen.len() + found.broken.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    let mut failures: Vec<(String, String)> = Vec::new();
    for (file, why) in &found.broken {
        let label = file.display().to_string();
        println!("test {label} ... FAILED");
        failures.push((label, why.clone()));
    }
    let mut passed = 0;
    for case in chosen {
        match run_case(root, case).await {
            Ok(()) => {
                passed += 1;
                println!("test {} ... ok", case.label);
            }
            Err(why) => {
                println!("test {} ... FAILED", case.label);
                failures.push((case.label.clone(), why));
            }
        }
    }
    if !failures.is_empty() {
        println!("\nfailures:");
        for (label, why) in &failures {
            println!("\n---- {label} ----\n{why}");
        }
        println!("\nfailures:");
        for (label, _) in &failures {
            println!("    {label}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; {filtered} filtered out; finished in {:.2}s\n",
        if failures.is_empty() { "ok" } else { "FAILED" },
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A robot of this process with the repository's templates loaded, and the
/// errors of those that did not load.
fn test_robot(root: &Path) -> (Robot, Vec<zrobot_core::TemplateError>) {
    let robot = Robot::new(
        RobotConfig {
            recurring: false,
            ..RobotConfig::default()
        },
        Arc::new(LuaEngine::new(LuaConfig::default())),
        Arc::new(MemoryStore::new()),
    );
    let load = robot.load_repository(root, &RepoId::local(root));
    (robot, load.errors)
}

/// Every test file of every template, in name order.
fn find(root: &Path) -> Found {
    let mut found = Found::default();
    let sorted = |dir: &Path| -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.sort();
        paths
    };
    for template in sorted(&root.join("templates")) {
        for file in sorted(&template.join("tests")) {
            let is_yaml = file.extension().is_some_and(|e| e == "yaml" || e == "yml");
            if !is_yaml || !file.is_file() {
                continue;
            }
            let shown = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
            match read(&file, &shown) {
                Ok(parsed) => {
                    let prefix = format!(
                        "{}/{}",
                        template.file_name().unwrap_or_default().to_string_lossy(),
                        file.file_stem().unwrap_or_default().to_string_lossy()
                    );
                    for test in parsed.tests {
                        let mut robots = parsed.robots.clone();
                        robots.extend(test.value.robots);
                        found.cases.push(Case {
                            label: format!("{prefix}: {}", test.value.name),
                            file: shown.clone(),
                            line: test.referenced.line(),
                            services: parsed
                                .services
                                .iter()
                                .cloned()
                                .chain(test.value.services)
                                .collect(),
                            robots,
                            steps: test.value.steps,
                        });
                    }
                }
                Err(why) => found.broken.push((shown, why)),
            }
        }
    }
    found
}

fn read(file: &Path, shown: &Path) -> Result<TestFile, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read it: {e}"))?;
    zrobot_core::yaml::from_str(&text)
        .map_err(|e| zrobot_core::yaml::describe_error(&e, &shown.display().to_string(), &text))
}

/// Tasks that ended while a step ran, on this robot (`robot: None`) and on
/// the stubbed ones.
#[derive(Default)]
struct Ran(Mutex<Vec<(Option<String>, TaskRecord)>>);

struct Recorder {
    robot: Option<String>,
    ran: Arc<Ran>,
}

impl Observer for Recorder {
    fn task_finished(&self, _service: &Service, task: &TaskRecord) {
        let mut ran = self.ran.0.lock().unwrap_or_else(|e| e.into_inner());
        ran.push((self.robot.clone(), task.clone()));
    }
}

/// The robots of one test.
struct Bench {
    robot: Robot,
    stubs: Vec<(String, stub::Stub)>,
    ran: Arc<Ran>,
}

/// How a step ended.
enum Outcome {
    Ok(Value),
    Failed {
        category: String,
        message: String,
        trace: String,
    },
}

async fn run_case(root: &Path, case: &Case) -> Result<(), String> {
    let (robot, _) = test_robot(root);
    let ran = Arc::new(Ran::default());
    robot.add_observer(Arc::new(Recorder {
        robot: None,
        ran: ran.clone(),
    }));
    let mut bench = Bench {
        robot,
        stubs: Vec::new(),
        ran,
    };
    let outcome = bench.run(case).await;
    for (_, stub) in bench.stubs.drain(..) {
        stub.stop().await;
    }
    bench
        .robot
        .shutdown(Duration::from_secs(1), Duration::from_secs(1))
        .await;
    outcome
}

impl Bench {
    async fn run(&mut self, case: &Case) -> Result<(), String> {
        let at = |line: u64| format!("{}:{line}", case.file.display());
        for (name, spec) in &case.robots {
            let stub = stub::Stub::start(name, spec)
                .await
                .map_err(|e| format!("{}: {e}", at(case.line)))?;
            stub.robot.add_observer(Arc::new(Recorder {
                robot: Some(name.clone()),
                ran: self.ran.clone(),
            }));
            self.robot
                .add_remote_robot(name, &stub.url, None)
                .await
                .map_err(|e| format!("{}: robots.{name}: {e}", at(case.line)))?;
            self.stubs.push((name.clone(), stub));
        }
        for (i, spec) in case.services.iter().enumerate() {
            self.create(spec).await.map_err(|e| {
                format!(
                    "{}: services[{i}]: cannot make `{}`: {e}",
                    at(case.line),
                    spec.name
                )
            })?;
        }
        self.settle(STEP_TIMEOUT)
            .await
            .map_err(|e| format!("{}: after making the services, {e}", at(case.line)))?;
        for (i, step) in case.steps.iter().enumerate() {
            let line = step.referenced.line();
            self.step(&step.value).await.map_err(|e| {
                format!("{}: step {} ({}): {e}", at(line), i + 1, step.value.label())
            })?;
        }
        Ok(())
    }

    async fn create(&self, spec: &ServiceSpec) -> Result<Arc<Service>, String> {
        self.robot
            .create_service(NewService {
                template: spec.template.clone(),
                name: spec.name.clone(),
                data: spec.data.clone(),
                public: spec.public,
                secrets: Vec::new(),
            })
            .await
            .map_err(|e| e.to_string())
    }

    fn service(&self, name: &str) -> Result<Arc<Service>, String> {
        self.robot.service_by_name(name).ok_or_else(|| {
            let mut names: Vec<String> = self
                .robot
                .find_services(&Default::default())
                .iter()
                .map(|s| s.name.clone())
                .collect();
            names.sort();
            format!(
                "this robot has no service `{name}` (it has: {}); make it under `services:` or in a `create` step",
                if names.is_empty() { "none".into() } else { names.join(", ") }
            )
        })
    }

    /// Runs one step and checks what it expects.
    async fn step(&self, step: &Step) -> Result<(), String> {
        let kind = step.kind()?;
        let timeout = match step.timeout {
            None => STEP_TIMEOUT,
            Some(t) if t.is_finite() && t > 0.0 && t <= 3600.0 => Duration::from_secs_f64(t),
            Some(t) => {
                return Err(format!(
                    "`timeout: {t}` is not a number of seconds between 0 and 3600"
                ))
            }
        };
        self.ran.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let mut own = None;
        let mut subject = None;
        // A deletion's `on_delete` actions are tasks of the step's own.
        let mut deleted = None;
        let outcome = match kind {
            StepKind::Action {
                service,
                action,
                args,
            } => {
                let svc = self.service(service)?;
                subject = Some(svc.clone());
                match self.robot.schedule(&svc, action, args).await {
                    Err(e) => Outcome::Failed {
                        category: "schedule".into(),
                        message: e.to_string(),
                        trace: String::new(),
                    },
                    Ok(task) => {
                        own = Some(task.guid);
                        let record = self
                            .robot
                            .wait_task(None, &task, Some(timeout))
                            .await
                            .map_err(|_| {
                                format!("the task did not end within {}s: raise the step's `timeout:` if it needs longer", timeout.as_secs_f64())
                            })?;
                        ended(&record)
                    }
                }
            }
            StepKind::Create(spec) => match self.create(spec).await {
                Ok(svc) => {
                    subject = Some(svc);
                    Outcome::Ok(Value::Null)
                }
                Err(message) => Outcome::Failed {
                    category: "create".into(),
                    message,
                    trace: String::new(),
                },
            },
            StepKind::Delete(name) => {
                let svc = self.service(name)?;
                deleted = Some(svc.guid);
                match self.robot.delete_service(svc.guid).await {
                    Err(e) => Outcome::Failed {
                        category: "delete".into(),
                        message: e.to_string(),
                        trace: String::new(),
                    },
                    Ok(report) if !report.on_delete_failed.is_empty() => Outcome::Failed {
                        category: "on_delete".into(),
                        message: report
                            .on_delete_failed
                            .iter()
                            .map(|(action, why)| format!("{action}: {why}"))
                            .collect::<Vec<_>>()
                            .join("; "),
                        trace: String::new(),
                    },
                    Ok(_) => Outcome::Ok(Value::Null),
                }
            }
        };
        self.settle(timeout).await?;
        let ran: Vec<(Option<String>, TaskRecord)> =
            std::mem::take(&mut *self.ran.0.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .filter(|(robot, t)| {
                    robot.is_some() || (Some(t.guid) != own && Some(t.service_guid) != deleted)
                })
                .collect();
        let mut problems = Vec::new();
        let expect = &step.expect;
        match (&outcome, &expect.error) {
            (
                Outcome::Failed {
                    category,
                    message,
                    trace,
                },
                None,
            ) => {
                let mut why = format!("failed: {category}: {message}");
                if !trace.is_empty() {
                    why.push_str(&format!("\n  traceback:\n{}", indent(trace, 4)));
                }
                why.push_str("\n  (if it should fail, say how under `expect: {error: ...}`)");
                return Err(why);
            }
            (Outcome::Ok(result), Some(wanted)) => problems.push(format!(
                "expected it to fail with {}, but it succeeded{}",
                matching::show(wanted),
                if result.is_null() {
                    String::new()
                } else {
                    format!(" with {}", matching::show(result))
                }
            )),
            (
                Outcome::Failed {
                    category, message, ..
                },
                Some(wanted),
            ) => problems.extend(error_differences(wanted, category, message)?),
            (Outcome::Ok(_), None) => {}
        }
        if let Some(wanted) = &expect.result {
            match &outcome {
                Outcome::Ok(result) => problems.extend(matching::differences(
                    wanted,
                    Some(result),
                    "result",
                    MAX_DIFFERENCES,
                )),
                Outcome::Failed { .. } => {
                    return Err("`result` and `error` are both expected: a step has one".into())
                }
            }
        }
        if expect.data.is_some() || expect.state.is_some() || !expect.log.is_empty() {
            let Some(svc) = subject
                .as_ref()
                .filter(|s| self.robot.service(s.guid).is_some())
            else {
                return Err("`data`, `state` and `log` are expected of the step's service, and this step leaves none: check other services under `expect: {services: {NAME: ...}}`".into());
            };
            problems.extend(service_differences(svc, &expect.data, &expect.state, ""));
            for part in &expect.log {
                let lines: Vec<String> = svc
                    .log_lines()
                    .into_iter()
                    .filter(|l| own.is_none() || l.task.as_ref().map(|t| t.1) == own)
                    .map(|l| l.message)
                    .collect();
                if !lines.iter().any(|l| l.contains(part.as_str())) {
                    problems.push(format!(
                        "log: no line contains {part:?}; the step logged {}",
                        if lines.is_empty() {
                            "nothing".to_owned()
                        } else {
                            format!("these lines:\n{}", indent(&lines.join("\n"), 4))
                        }
                    ));
                }
            }
        }
        for (name, wanted) in &expect.services {
            let svc = self.service(name)?;
            problems.extend(service_differences(
                &svc,
                &wanted.data,
                &wanted.state,
                &format!("services.{name}."),
            ));
        }
        if let Some(wanted) = &expect.scheduled {
            problems.extend(scheduled_differences(wanted, &ran));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "not as expected:\n{}",
                problems
                    .iter()
                    .map(|p| indent(p, 2))
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
        }
    }

    /// Waits until no task waits, runs or is being stored on any robot of
    /// the test, so that a step's checks see all it caused.
    async fn settle(&self, bound: Duration) -> Result<(), String> {
        let deadline = Instant::now() + bound;
        let busy = || -> Vec<String> {
            std::iter::once((None, &self.robot))
                .chain(self.stubs.iter().map(|(n, s)| (Some(n), &s.robot)))
                .flat_map(|(robot, r)| {
                    r.find_services(&Default::default())
                        .into_iter()
                        .filter(|s| !s.is_idle())
                        .map(move |s| match robot {
                            Some(robot) => format!("{robot}: {}", s.name),
                            None => s.name.clone(),
                        })
                })
                .collect()
        };
        let mut quiet = 0;
        loop {
            let busy = busy();
            if busy.is_empty() {
                quiet += 1;
                if quiet == 2 {
                    return Ok(());
                }
            } else {
                quiet = 0;
                if Instant::now() >= deadline {
                    return Err(format!(
                        "tasks it scheduled were still running after {}s, on: {}; raise the step's `timeout:` or end them",
                        bound.as_secs_f64(),
                        busy.join(", ")
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn ended(record: &TaskRecord) -> Outcome {
    match (record.state, &record.eco) {
        (TaskState::Ok, _) => Outcome::Ok(record.result.clone().unwrap_or(Value::Null)),
        (_, Some(eco)) => Outcome::Failed {
            category: eco.category.clone(),
            message: eco.message.clone(),
            trace: eco.trace.clone(),
        },
        (state, None) => Outcome::Failed {
            category: "task".into(),
            message: format!("the task ended {state:?} without an error"),
            trace: String::new(),
        },
    }
}

/// How a failure differs from `expect.error`: a part of the message, or
/// `{message, category}`.
fn error_differences(wanted: &Value, category: &str, message: &str) -> Result<Vec<String>, String> {
    let (part, want_category) = match wanted {
        Value::String(part) => (Some(part.as_str()), None),
        Value::Object(o) if o.keys().all(|k| k == "message" || k == "category") => {
            let text = |k: &str| -> Result<Option<&str>, String> {
                match o.get(k) {
                    None => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s)),
                    Some(_) => Err(format!("`error.{k}` must be text")),
                }
            };
            (text("message")?, text("category")?)
        }
        _ => {
            return Err(
                "`error` is a part of the message, or `{message: PART, category: CATEGORY}`".into(),
            )
        }
    };
    let mut out = Vec::new();
    if let Some(part) = part {
        if !message.contains(part) {
            out.push(format!(
                "error: expected a message containing {part:?}, got {category}: {message}"
            ));
        }
    }
    if let Some(want) = want_category {
        if want != category {
            out.push(format!(
                "error.category: expected {want:?}, got {category:?} ({message})"
            ));
        }
    }
    Ok(out)
}

fn service_differences(
    svc: &Service,
    data: &Option<Value>,
    state: &Option<Value>,
    prefix: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(want) = data {
        out.extend(matching::differences(
            want,
            Some(&svc.data()),
            &format!("{prefix}data"),
            MAX_DIFFERENCES,
        ));
    }
    if let Some(want) = state {
        let table: serde_json::Map<String, Value> = svc
            .state()
            .into_iter()
            .map(|(category, tags)| {
                let tags = tags
                    .into_iter()
                    .map(|(tag, s)| (tag, Value::from(s.as_str())))
                    .collect();
                (category, Value::Object(tags))
            })
            .collect();
        out.extend(matching::differences(
            want,
            Some(&Value::Object(table)),
            &format!("{prefix}state"),
            MAX_DIFFERENCES,
        ));
    }
    out
}

/// How the tasks that ran differ from those expected: each expected one
/// takes the first task it matches, and no task may be left over.
fn scheduled_differences(
    wanted: &[ScheduledSpec],
    ran: &[(Option<String>, TaskRecord)],
) -> Vec<String> {
    let fits = |w: &ScheduledSpec, (robot, t): &(Option<String>, TaskRecord)| {
        w.robot == *robot
            && w.service == t.service_name
            && w.action == t.action_name
            && w.args
                .as_ref()
                .is_none_or(|a| matching::matches(a, &t.args))
            && w.state.as_deref().is_none_or(|s| s == state_name(t.state))
    };
    let mut used = vec![false; ran.len()];
    let mut out = Vec::new();
    for w in wanted {
        match (0..ran.len()).find(|&i| !used[i] && fits(w, &ran[i])) {
            Some(i) => used[i] = true,
            None => {
                let mut asked = json!({"service": w.service, "action": w.action});
                for (key, value) in [
                    ("robot", w.robot.clone().map(Value::from)),
                    ("args", w.args.clone()),
                    ("state", w.state.clone().map(Value::from)),
                ] {
                    if let Some(value) = value {
                        asked[key] = value;
                    }
                }
                out.push(format!(
                    "scheduled: no task matched {}",
                    matching::show(&asked)
                ))
            }
        }
    }
    for (i, r) in ran.iter().enumerate() {
        if !used[i] {
            out.push(format!(
                "scheduled: {} ran, and is not expected",
                describe(r)
            ));
        }
    }
    if !out.is_empty() {
        let all: Vec<String> = ran.iter().map(describe).collect();
        out.push(format!(
            "the tasks that ran: {}",
            if all.is_empty() {
                "none".into()
            } else {
                format!("these\n{}", indent(&all.join("\n"), 2))
            }
        ));
    }
    out
}

fn describe((robot, t): &(Option<String>, TaskRecord)) -> String {
    format!(
        "{}{}.{} {} ({})",
        robot.as_ref().map(|r| format!("{r}: ")).unwrap_or_default(),
        t.service_name,
        t.action_name,
        matching::show(&t.args),
        state_name(t.state)
    )
}

fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::New => "new",
        TaskState::Running => "running",
        TaskState::Ok => "ok",
        TaskState::Error => "error",
    }
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
