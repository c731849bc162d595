//! Following tasks to their end: long polls of the robot (never a busy
//! loop), a spinner per task on a terminal, then a summary whose exit code
//! says whether every task ended ok.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;
use zrobot_client::{Client, ClientError, Task, TaskState};

use super::context::{EXIT_FAILURE, EXIT_UNREACHABLE};
use super::output;

/// One long poll: short, so a spinner sees `new` turn into `running`.
const POLL: Duration = Duration::from_secs(2);
/// A robot that stops answering is asked again this many times, a second
/// apart, before its tasks are given up on: it may be restarting.
const TRANSPORT_RETRIES: u32 = 10;
/// Past this many tasks, one bar counts them instead of a spinner each.
const MAX_SPINNERS: usize = 20;
/// Long polls in flight at once.
const MAX_POLLS: usize = 64;

/// How one followed task ended.
pub struct Followed {
    /// The task as first seen (scheduled).
    pub scheduled: Task,
    /// The task as last seen, or why it could not be followed.
    pub end: Result<Task, ClientError>,
}

impl Followed {
    fn ok(&self) -> bool {
        matches!(&self.end, Ok(t) if t.state == TaskState::Ok)
    }

    /// The task as last known, even if following it failed.
    pub fn last(&self) -> &Task {
        self.end.as_ref().unwrap_or(&self.scheduled)
    }
}

/// Follows every task until it is done. `client` must be allowed to see
/// each task (a secret of its service, or a JWT).
pub async fn follow(client: &Client, tasks: Vec<Task>) -> Vec<Followed> {
    follow_with(client, tasks, |_| None).await
}

/// [`follow`], each task asked about with the secret `secret_of` gives for
/// its service (when it gives one) rather than the secrets of `client`: a
/// request carries the secret of the service it addresses and no other.
pub async fn follow_with(
    client: &Client,
    tasks: Vec<Task>,
    secret_of: impl Fn(uuid::Uuid) -> Option<String>,
) -> Vec<Followed> {
    let progress = MultiProgress::with_draw_target(if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let spinners = tasks.len() <= MAX_SPINNERS;
    let style = ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {msg} ({elapsed})")
        .expect("a valid template")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓");
    let total = if spinners {
        None
    } else {
        let bar = progress.add(ProgressBar::new(tasks.len() as u64));
        bar.set_style(
            ProgressStyle::with_template("{bar:30.cyan} {pos}/{len} tasks done ({elapsed})")
                .expect("a valid template"),
        );
        Some(bar)
    };
    let limit = Arc::new(Semaphore::new(MAX_POLLS));
    let mut handles = Vec::with_capacity(tasks.len());
    for task in tasks {
        let spinner = spinners.then(|| {
            // Styled before it is added, so its first frame is complete.
            let pb = ProgressBar::new_spinner()
                .with_style(style.clone())
                .with_prefix(format!("{}.{}", task.service_name, task.action_name))
                .with_message(output::task_state(task.state));
            let pb = progress.add(pb);
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        });
        let client = match secret_of(task.service_guid) {
            Some(secret) => client.with_secrets(vec![secret]),
            None => client.clone(),
        };
        let limit = limit.clone();
        let total = total.clone();
        handles.push(tokio::spawn(async move {
            let end = follow_one(&client, &task, spinner.as_ref(), &limit).await;
            if let Some(pb) = &spinner {
                pb.finish_with_message(match &end {
                    Ok(t) => output::task_state(t.state).to_owned(),
                    Err(e) => format!("lost: {e}"),
                });
            }
            if let Some(bar) = &total {
                bar.inc(1);
            }
            Followed {
                scheduled: task,
                end,
            }
        }));
    }
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        // A follower never panics; if one did, the summary would miss its
        // task, so make that visible rather than silent.
        out.push(h.await.expect("a task follower panicked"));
    }
    if let Some(bar) = total {
        bar.finish();
    }
    let _ = progress.clear();
    out
}

async fn follow_one(
    client: &Client,
    task: &Task,
    spinner: Option<&ProgressBar>,
    limit: &Semaphore,
) -> Result<Task, ClientError> {
    let mut failures = 0;
    loop {
        let seen = {
            let _permit = limit
                .acquire()
                .await
                .expect("the semaphore is never closed");
            client.wait_task(task.service_guid, task.guid, POLL).await
        };
        match seen {
            Ok(t) if t.state.is_done() => return Ok(t),
            Ok(t) => {
                failures = 0;
                if let Some(pb) = spinner {
                    pb.set_message(output::task_state(t.state));
                }
            }
            Err(e @ ClientError::Transport { .. }) => {
                failures += 1;
                if failures > TRANSPORT_RETRIES {
                    return Err(e);
                }
                if let Some(pb) = spinner {
                    pb.set_message("robot unreachable, retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Prints the outcome of every task (a table, then each failure's eco) and
/// returns 0 if all ended ok, 3 if the robot was lost, 1 otherwise.
pub fn summary(followed: &[Followed]) -> ExitCode {
    let tasks: Vec<Task> = followed.iter().map(|f| f.last().clone()).collect();
    if !tasks.is_empty() {
        println!("{}", output::tasks_table(&tasks));
    }
    let ok = followed.iter().filter(|f| f.ok()).count();
    for f in followed.iter().filter(|f| !f.ok()) {
        let t = f.last();
        match &f.end {
            Ok(t) => {
                let (cat, msg) = t
                    .eco
                    .as_ref()
                    .map(|e| (e.cat.as_str(), e.message.as_str()))
                    .unwrap_or(("error", "no eco given"));
                println!(
                    "✗ {}.{} failed ({cat}): {msg}",
                    t.service_name, t.action_name
                );
            }
            Err(e) => println!(
                "? {}.{}: cannot follow the task: {e}",
                t.service_name, t.action_name
            ),
        }
    }
    println!(
        "{} task(s): {ok} ok, {} failed",
        followed.len(),
        followed.len() - ok
    );
    code(followed)
}

/// The exit code of a set of followed tasks.
pub fn code(followed: &[Followed]) -> ExitCode {
    if followed
        .iter()
        .any(|f| matches!(f.end, Err(ClientError::Transport { .. })))
    {
        ExitCode::from(EXIT_UNREACHABLE)
    } else if followed.iter().all(Followed::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}
