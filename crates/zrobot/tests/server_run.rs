//! `zrobot::server::run` in the test's own process: flags checked into a
//! `ServerConfig`, a robot served on a listener of the test's, stopped by a
//! future of the test's, and its database complete once `run` returns.

mod util;

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use util::*;
use zrobot::cli::{Cli, Command, ServerCommand};
use zrobot::server::{run, ServerConfig, StartArgs};
use zrobot_client::wire::TaskState;
use zrobot_client::{Client, Credentials};
use zrobot_core::store::{Retention, Store};

const NOTE_LUA: &str = r#"
local n = {}
function n.note(self, args) table.insert(self.data.notes, args.id) end
return n
"#;
const NOTE_YAML: &str = "version: 1.0.0\ndata: {type: object, properties: {notes: {type: array, items: {type: string}, default: []}}}\n";

fn start_args(flags: &[&str]) -> StartArgs {
    let argv = ["zrobot", "server", "start"].iter().chain(flags);
    match Cli::try_parse_from(argv).expect("flags parse").command {
        Command::Server(ServerCommand::Start(args)) => args,
        _ => unreachable!("`server start` parses to its own command"),
    }
}

fn config_of(flags: &[&str]) -> anyhow::Result<ServerConfig> {
    ServerConfig::from_args(&start_args(flags)).map(|(_, config)| config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_until_its_shutdown_and_leaves_the_database_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("repo"),
        &[
            ("templates/note/template.yaml", NOTE_YAML),
            ("templates/note/note.lua", NOTE_LUA),
        ],
    );
    let data = tmp.path().join("data");
    let repo_arg = format!("file://{}", repo.display());
    let config = config_of(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--god",
        "-T",
        &repo_arg,
    ])
    .expect("a good configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let robot = tokio::spawn(run(listener, config, async {
        let _ = stopped.await;
    }));

    let token = std::fs::read_to_string(data.join("god.token")).unwrap();
    let client = Client::new(&url, Credentials::god(token.trim())).unwrap();
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            client.robot_info().await.is_ok()
        })
        .await,
        "the robot answers"
    );
    let svc = new_service(&client, "note", "notes").await;
    let task = client
        .schedule(svc, "note", json!({"id": "a"}))
        .await
        .unwrap();
    let done = client
        .wait_task(svc, task.guid, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::Ok);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), robot)
        .await
        .expect("run returns within its stop bounds")
        .unwrap()
        .expect("run ends without an error");
    assert!(
        client.robot_info().await.is_err(),
        "nothing answers once run returned"
    );

    // Everything acknowledged is in the database.
    let store = zrobot_store::SqliteStore::open(&data.join("zrobot.db"), Retention::default())
        .expect("the database opens again");
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.services.len(), 1);
    assert_eq!(loaded.services[0].data["notes"], json!(["a"]));
    let finished = store.finished_tasks(svc, 10).await.unwrap();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].guid, task.guid);
}

#[test]
fn bad_flags_are_refused_before_the_data_directory_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = data.to_str().unwrap();
    for (flags, names) in [
        (vec!["--history-max-days=-1"], "--history-max-days"),
        (vec!["--remote-timeout", "0"], "--remote-timeout"),
        (vec!["--exec-output-limit", "0"], "--exec-output-limit"),
        (vec!["--robot", "nameless"], "--robot"),
        (vec!["--robot", "b=ftp://x"], "http://"),
        (vec!["-L", "localhost"], "--listen"),
        // An open robot on a public address needs --insecure.
        (vec!["-L", "0.0.0.0:0"], "--insecure"),
    ] {
        let mut all = vec!["--data-dir", dir];
        all.extend(&flags);
        let err = config_of(&all).expect_err("a bad flag is refused");
        let message = format!("{err:#}");
        assert!(message.contains(names), "{flags:?}: {message}");
        assert!(
            !Path::new(&data).exists(),
            "{flags:?} made the data directory"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_of_run_outlives_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A repository that cannot be cloned: the server keeps retrying it in
    // the background, which must end with the server.
    let missing = format!("file://{}", tmp.path().join("no-such-repo").display());
    let config = config_of(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--god",
        "-T",
        &missing,
    ])
    .expect("a good configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let robot = tokio::spawn(run(listener, config, async {
        let _ = stopped.await;
    }));
    let open = Client::new(&url, Credentials::default()).unwrap();
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            open.robot_info().await.is_ok()
        })
        .await,
        "the robot answers"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), robot)
        .await
        .expect("run returns within its stop bounds")
        .unwrap()
        .expect("run ends without an error");
    drop(open);
    let runtime = tokio::runtime::Handle::current();
    assert!(
        eventually_async(Duration::from_secs(3), || async {
            runtime.metrics().num_alive_tasks() == 0
        })
        .await,
        "{} tasks outlive run",
        runtime.metrics().num_alive_tasks()
    );
}
