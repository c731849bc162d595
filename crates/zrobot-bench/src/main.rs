//! The project's benchmark: measures the speed and size figures of the design
//! (the table in `figures.rs`) on this machine and prints each next to its
//! bar, then all of them as one JSON object on the last line.
//!
//! Task throughput and local round trips run on robots of this process; memory,
//! restart, HTTP and cross-robot figures run on real `zrobot server start`
//! processes. Only tasks that ended `ok` count: any other outcome fails the run.

/// The robot binary's allocator, so that the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod figures;
mod helper;
mod load;
mod local;
mod process;
mod served;
mod subscribers;
mod template;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use figures::{Context, Figure, Place, FIGURES};

/// Measure zrobot against the bars of its design.
#[derive(Parser)]
struct Args {
    /// Small counts, well under a minute in all: proves the benchmark runs (CI).
    #[arg(long)]
    quick: bool,
    /// How many times each figure is measured; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Measure only the figure of this key, else those whose key contains it
    /// (e.g. `restart`).
    #[arg(long)]
    only: Option<String>,
    /// Measure in this process (by default each figure runs in a process of
    /// its own, so that no figure pays for what an earlier one left behind).
    #[arg(long)]
    in_process: bool,
    /// The `zrobot` binary the figures start as `zrobot server start`
    /// (default: the one next to this program, of the same build profile).
    #[arg(long, value_name = "PATH")]
    zrobot: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Generates HTTP load for a figure (a plan on stdin): the benchmark's
    /// second process.
    #[command(hide = true)]
    Load,
    /// Follows a robot's event stream for a figure (a plan on stdin): the
    /// benchmark's second process.
    #[command(hide = true)]
    Subscribe,
}

/// The figures `--only` selects: the one of that key (or with a reading of
/// that key), else every figure whose key contains it.
fn selected(only: Option<&str>) -> Vec<&'static Figure> {
    let Some(o) = only else {
        return FIGURES.iter().collect();
    };
    let exact: Vec<_> = FIGURES
        .iter()
        .filter(|f| f.key == o || f.readings.iter().any(|r| r.key == o))
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    FIGURES.iter().filter(|f| f.key.contains(o)).collect()
}

fn header(args: &Args, runs: usize) -> String {
    format!(
        "zrobot benchmark: {} cores, {} mode, median of {runs} run(s), each figure names its store and where its robots run, mimalloc, zrobot {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        if args.quick { "quick (counts far below the bars' conditions)" } else { "full" },
        env!("CARGO_PKG_VERSION"),
    )
}

/// Runs each figure in a child process and prints them all.
fn run_children(args: &Args, figures: &[&Figure]) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find this program to run its figures: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{} (each figure in its own process)",
        header(args, runs(args))
    );
    let mut all = serde_json::Map::new();
    for f in figures {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "--in-process",
            "--only",
            f.key,
            "--runs",
            &args.runs.to_string(),
        ]);
        if args.quick {
            cmd.arg("--quick");
        }
        if let Some(z) = &args.zrobot {
            cmd.arg("--zrobot").arg(z);
        }
        let out = match cmd.stderr(std::process::Stdio::inherit()).output() {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                eprintln!(
                    "error: measuring `{}` failed ({}); the reason is above",
                    f.key, o.status
                );
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("error: cannot run the figure `{}`: {e}", f.key);
                return ExitCode::from(2);
            }
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        if let Some((json, body)) = lines.split_last() {
            for l in body {
                println!("{l}");
            }
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(json) {
                all.extend(m);
            }
        }
    }
    println!("{}", Value::Object(all));
    ExitCode::SUCCESS
}

fn runs(args: &Args) -> usize {
    if args.quick {
        1
    } else {
        args.runs.max(1)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// `{0}`, `{1}`... of a reading's text replaced by the figure's counts.
fn describe(what: &str, counts: &[usize]) -> String {
    let mut s = what.to_owned();
    for (i, n) in counts.iter().enumerate() {
        s = s.replace(&format!("{{{i}}}"), &thousands(*n));
    }
    s
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Measures `figures` here, `runs` times each, and prints their readings.
fn run_here(args: &Args, figures: &[&Figure]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the benchmark's runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runs = runs(args);
    let ctx = Context {
        zrobot: args.zrobot.clone(),
    };
    println!("{}", header(args, runs));
    let mut out = serde_json::Map::new();
    for f in figures {
        let counts = if args.quick { f.quick } else { f.full };
        let mut values: Vec<Vec<f64>> = vec![Vec::new(); f.readings.len()];
        for run in 0..runs {
            match runtime.block_on((f.run)(ctx.clone(), counts)) {
                Ok(v) if v.len() == f.readings.len() => {
                    for (i, x) in v.into_iter().enumerate() {
                        values[i].push(x);
                    }
                }
                Ok(v) => {
                    eprintln!(
                        "error: figure `{}` gave {} values for {} readings",
                        f.key,
                        v.len(),
                        f.readings.len()
                    );
                    return ExitCode::from(2);
                }
                Err(e) => {
                    eprintln!(
                        "error: figure `{}` (run {} of {runs}) failed: {e:#}",
                        f.key,
                        run + 1
                    );
                    return ExitCode::from(1);
                }
            }
        }
        for (r, v) in f.readings.iter().zip(values) {
            let value = median(v);
            let holds = r.bar.is_none_or(|b| b.holds(value));
            let bar = r.bar.map_or(String::new(), |b| {
                format!("bar {b} {}", if holds { "holds" } else { "MISSED" })
            });
            let shown = if value >= 100.0 {
                format!("{value:.0}")
            } else {
                format!("{value:.2}")
            };
            println!(
                "{shown:>12} {:<8} {}  {bar}",
                r.unit,
                describe(r.what, counts)
            );
            out.insert(
                r.key.to_owned(),
                json!({"value": value, "unit": r.unit, "bar": r.bar.map(|b| b.value()), "holds": holds}),
            );
        }
    }
    // Robots the figures started are killed as their handles drop, before
    // the runtime goes.
    drop(runtime);
    println!("{}", Value::Object(out));
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = Args::parse();
    let helper = match args.command {
        Some(Command::Load) => Some(("load", load::main as fn() -> anyhow::Result<()>)),
        Some(Command::Subscribe) => {
            Some(("subscribe", subscribers::main as fn() -> anyhow::Result<()>))
        }
        None => None,
    };
    if let Some((name, run)) = helper {
        return match run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {name}: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let figures = selected(args.only.as_deref());
    if figures.is_empty() {
        let keys: Vec<_> = FIGURES.iter().map(|f| f.key).collect();
        eprintln!(
            "error: --only {}: no figure has that key or a key containing it; the figures are {}",
            args.only.as_deref().unwrap_or_default(),
            keys.join(", ")
        );
        return ExitCode::from(2);
    }
    // Fail before the first figure rather than minutes into the run.
    if figures.iter().any(|f| f.place == Place::Servers) {
        if let Err(e) = process::zrobot_binary(args.zrobot.as_deref()) {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    if args.in_process {
        run_here(&args, &figures)
    } else {
        run_children(&args, &figures)
    }
}
