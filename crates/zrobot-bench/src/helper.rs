//! The benchmark's second processes (`zrobot-bench load`, `subscribe`): this
//! program started again with a subcommand, its plan as JSON on stdin (so
//! that secrets never show in a process list), its outcome as the last JSON
//! line on stdout.

use std::future::Future;
use std::io::Read;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

/// In the second process: reads the plan on stdin, runs `run` on a runtime
/// of its own, prints the outcome.
pub fn serve<P, O, F>(what: &str, run: impl FnOnce(P) -> F) -> anyhow::Result<()>
where
    P: DeserializeOwned,
    O: Serialize,
    F: Future<Output = anyhow::Result<O>>,
{
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} plan on stdin"))?;
    let plan: P =
        serde_json::from_str(&text).with_context(|| format!("the {what} plan does not parse"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .with_context(|| format!("cannot start the {what} runtime"))?;
    let outcome = runtime.block_on(run(plan))?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// Starts this program with `subcommand`, hands it `plan` on stdin, and
/// returns it with its stdout piped (it is killed when dropped).
pub async fn start(
    subcommand: &str,
    plan: &impl Serialize,
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe()
        .with_context(|| format!("cannot find this program to run `{subcommand}`"))?;
    let mut child = tokio::process::Command::new(exe)
        .arg(subcommand)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the `{subcommand}` process"))?;
    let mut stdin = child
        .stdin
        .take()
        .with_context(|| format!("no stdin of the `{subcommand}` process"))?;
    stdin
        .write_all(serde_json::to_string(plan)?.as_bytes())
        .await?;
    drop(stdin);
    Ok(child)
}
