//! Actions that spin share the template threads: the budget hook yields a
//! spinning action every few milliseconds (mlua turns a hook's yield inside
//! an async call into "wake me, `Pending`"), so the executor runs the others.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use zrobot_core::TaskState;

const SPIN_YAML: &str = "version: 1.0.0\nactions:\n  spin: {timeout: 3}\n";
const SPIN_LUA: &str = r#"
local t = {}
function t.spin(self) while true do end end
function t.count(self, args)
  local n = 0
  for i = 1, args.n do n = n + i % 7 end
  return n
end
function t.noop(self) return "done" end
return t
"#;

/// The attack: an action in `while true do end` held its thread until its
/// timeout, so on a single template thread a no-op of another service
/// waited seconds behind it. With one thread and a spinning action, the
/// no-op must still end within 1 s, while the loop goes on spinning.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_action_lets_others_run_on_its_thread() {
    let repo = Repo::new();
    repo.template("spin", SPIN_YAML, SPIN_LUA);
    let robot = robot();
    load(&robot, &repo);
    let spinner = create(&robot, "spin", "spinner", json!({})).await;
    let quiet = create(&robot, "spin", "quiet", json!({})).await;
    let spin = robot.schedule(&spinner, "spin", Value::Null).await.unwrap();
    let started = eventually(Duration::from_secs(10), || {
        spin.state() == TaskState::Running
    })
    .await;
    assert!(started, "the spinning action never started");

    let t = Instant::now();
    let noop = run(&robot, &quiet, "noop", Value::Null).await;
    let took = t.elapsed();
    eprintln!("no-op beside a spinning action on one thread: {took:?}");
    assert_eq!(noop.state, TaskState::Ok, "{noop:?}");
    assert!(
        took <= Duration::from_secs(1),
        "a no-op waited {took:?} behind a spinning action"
    );
    assert_eq!(spin.state(), TaskState::Running, "the loop ended early");

    // The loop still ends by its timeout, and a state that yielded in the
    // middle of its work computes the same as one that did not.
    let spun = tokio::time::timeout(Duration::from_secs(30), spin.done())
        .await
        .expect("the loop was not stopped by its timeout");
    assert_eq!(spun.state, TaskState::Error);
    assert_eq!(spun.eco.unwrap().category, "action.timeout");
    let n = 3_000_000u64;
    let expected: u64 = (1..=n).map(|i| i % 7).sum();
    let counted = run(&robot, &quiet, "count", json!({ "n": n })).await;
    assert_eq!(counted.state, TaskState::Ok, "{counted:?}");
    assert_eq!(counted.result, Some(json!(expected)));
}
