//! What `robot.exec` and `robot.http.request` read is bounded: a process
//! or a server that sends without end fails the action quickly with an error
//! naming the limit and its flag, and the robot's memory stays low.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use zrobot_core::{RobotConfig, TaskState};
use zrobot_lua::LuaConfig;

const FLOOD_LUA: &str = r#"
local f = {}

function f.exec(self, args)
  local r = robot.exec(args.argv, {timeout = 120})
  return {status = r.status, stdout = #r.stdout, stderr = #r.stderr}
end

function f.http(self, args)
  local r = robot.http.request({url = args.url, timeout = 120})
  return {status = r.status, body = #r.body}
end

return f
"#;

fn flood_robot(lua: LuaConfig) -> (zrobot_core::Robot, Repo) {
    let robot = robot_with(RobotConfig::default(), lua);
    let repo = Repo::new();
    repo.template("flood", "version: 1.0.0\n", FLOOD_LUA);
    load(&robot, &repo);
    (robot, repo)
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// How far this process's resident memory may grow past its size before a
/// flood: the cap (16 MiB per stream) plus room for the Lua state and the
/// test runner, far below what an unbounded read takes in the same time.
const GROWTH_BOUND_KIB: u64 = 160 * 1024;

/// Attack: a template runs `yes`, whose output never ends; the robot used to
/// buffer all of it outside the Lua memory limit (3 GB of output, 4.4 GB
/// resident). Now the process is killed at the cap and the action fails
/// quickly, naming the limit and the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_of_endless_output_is_killed_at_the_cap() {
    let (robot, _repo) = flood_robot(LuaConfig::default());
    let svc = create(&robot, "flood", "f", json!({})).await;
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let t = run(&robot, &svc, "exec", json!({"argv": ["yes"]})).await;
    assert_eq!(t.state, TaskState::Error);
    let m = t.eco.unwrap().message;
    assert!(
        m.contains("16 MiB") && m.contains("stdout") && m.contains("--exec-output-limit"),
        "{m}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let peak = status_kib("VmHWM:");
    assert!(
        peak < before + GROWTH_BOUND_KIB,
        "resident memory peaked at {peak} KiB from {before} KiB"
    );

    // Also on stderr, with a limit of its own; output under it comes back whole.
    let (robot, _repo) = flood_robot(LuaConfig {
        exec_output_limit: 1024 * 1024,
        ..Default::default()
    });
    let svc = create(&robot, "flood", "f", json!({})).await;
    let argv = json!(["sh", "-c", "head -c 100000000 /dev/zero >&2"]);
    let t = run(&robot, &svc, "exec", json!({ "argv": argv })).await;
    let m = t.eco.unwrap().message;
    assert!(m.contains("1 MiB") && m.contains("stderr"), "{m}");
    let argv = json!(["sh", "-c", "head -c 1048576 /dev/zero; echo err >&2"]);
    let t = run(&robot, &svc, "exec", json!({ "argv": argv })).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert_eq!(
        t.result.unwrap(),
        json!({"status": 0, "stdout": 1048576, "stderr": 4})
    );
}

/// A server on loopback that answers every request with `length` bytes of
/// body (`None`: chunked and endless), announcing `announced` as its
/// `content-length` when given.
async fn flooding_server(announced: Option<u64>, length: Option<usize>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/flood", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = match announced {
                    Some(n) => format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n"),
                    None => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned(),
                };
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                // Writes until the client hangs up (or `length` is sent).
                loop {
                    let n = match length {
                        Some(l) if sent >= l => {
                            if announced.is_none() {
                                let _ = s.write_all(b"0\r\n\r\n").await;
                            }
                            return;
                        }
                        Some(l) => (l - sent).min(block.len()),
                        None => block.len(),
                    };
                    let ok = if announced.is_some() {
                        s.write_all(&block[..n]).await
                    } else {
                        let mut chunk = format!("{n:x}\r\n").into_bytes();
                        chunk.extend_from_slice(&block[..n]);
                        chunk.extend_from_slice(b"\r\n");
                        s.write_all(&chunk).await
                    };
                    if ok.is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    url
}

/// Attack: a server answers a template's `robot.http.request` with a body
/// that never ends (or announces gigabytes); the robot used to read whole
/// bodies outside the Lua memory limit. Now the request is dropped at the
/// cap and the action fails quickly, naming the limit and the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_body_without_end_is_dropped_at_the_cap() {
    let (robot, _repo) = flood_robot(LuaConfig {
        http_body_limit: 4 * 1024 * 1024,
        ..Default::default()
    });
    let svc = create(&robot, "flood", "f", json!({})).await;
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let endless = flooding_server(None, None).await;
    let t = run(&robot, &svc, "http", json!({ "url": endless })).await;
    assert_eq!(t.state, TaskState::Error);
    let m = t.eco.unwrap().message;
    assert!(
        m.contains("4 MiB") && m.contains("--http-body-limit") && m.contains(&endless),
        "{m}"
    );
    let huge = flooding_server(Some(8 << 30), None).await;
    let t = run(&robot, &svc, "http", json!({ "url": huge })).await;
    let m = t.eco.unwrap().message;
    assert!(
        m.contains("4 MiB") && m.contains("--http-body-limit"),
        "{m}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let peak = status_kib("VmHWM:");
    assert!(
        peak < before + GROWTH_BOUND_KIB,
        "resident memory peaked at {peak} KiB from {before} KiB"
    );

    // A body within the limit is read whole, announced or chunked.
    for (announced, length) in [(Some(3 << 20), 3 << 20), (None, 4 << 20)] {
        let url = flooding_server(announced, Some(length as usize)).await;
        let t = run(&robot, &svc, "http", json!({ "url": url })).await;
        assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
        assert_eq!(t.result.unwrap(), json!({"status": 200, "body": length}));
    }
}
