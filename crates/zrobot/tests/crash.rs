//! SIGKILL at random moments loses no acknowledged service or task: a real
//! robot process on a real SQLite file, several clients at once.

mod util;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use util::*;
use uuid::Uuid;
use zrobot_client::Client;

const NOTE_LUA: &str = r#"
local n = {}
function n.note(self, args)
  robot.sleep(0.002)
  table.insert(self.data.notes, args.id)
end
return n
"#;
const NOTE_YAML: &str = "version: 1.0.0\ndata: {type: object, properties: {notes: {type: array, items: {type: string}, default: []}}}\n";

/// What the robot acknowledged before it died.
#[derive(Default)]
struct Acked {
    services: HashSet<Uuid>,
    /// task guid -> (service guid, note id)
    tasks: HashMap<Uuid, (Uuid, String)>,
}

async fn load(client: Client, services: Vec<Uuid>, acked: Arc<Mutex<Acked>>, worker: usize) {
    let mut i = 0usize;
    loop {
        let svc = services[(i + worker) % services.len()];
        let id = format!("w{worker}-{i}-{}", Uuid::new_v4().simple());
        match client.schedule(svc, "note", json!({"id": id})).await {
            Ok(task) => {
                let guid: Uuid = task.guid;
                acked.lock().unwrap().tasks.insert(guid, (svc, id));
            }
            Err(_) => return, // the robot died
        }
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_task() {
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
    let mut robot = RobotProcess::start(&data, &["--god", "-T", &repo_arg]);
    let acked = Arc::new(Mutex::new(Acked::default()));

    for round in 0..3 {
        let client = robot.god_client();
        // Services, acknowledged one by one.
        let mut services = Vec::new();
        for i in 0..8 {
            let guid: Uuid = new_service(&client, "note", &format!("r{round}s{i}")).await;
            acked.lock().unwrap().services.insert(guid);
            services.push(guid);
        }
        let mut workers = Vec::new();
        for w in 0..4 {
            workers.push(tokio::spawn(load(
                client.clone(),
                services.clone(),
                acked.clone(),
                w,
            )));
        }
        // Kill at a different moment each round.
        let wait = 100 + fastrand::u64(0..400) + round as u64 * 150;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        robot.kill();
        for w in workers {
            w.await.unwrap();
        }
        robot.restart();
    }

    // Everything acknowledged is there, and every task runs exactly once.
    let client = robot.god_client();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    eprintln!(
        "acknowledged: {} services, {} tasks",
        acked.services.len(),
        acked.tasks.len()
    );
    assert!(
        acked.tasks.len() > 100,
        "too few tasks acknowledged to prove anything: {}",
        acked.tasks.len()
    );
    for svc in &acked.services {
        client
            .service(*svc)
            .await
            .unwrap_or_else(|e| panic!("service {svc} lost: {e}"));
    }
    for (task, (svc, _)) in acked.tasks.iter() {
        let t = client
            .wait_done(*svc, *task, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("task {task} lost: {e}"));
        assert_eq!(t.state, zrobot_client::wire::TaskState::Ok, "{t:?}");
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for svc in &acked.services {
        let s = client.service(*svc).await.unwrap();
        let notes = s.data.as_ref().expect("god mode shows data")["notes"]
            .as_array()
            .unwrap()
            .clone();
        for n in notes {
            *seen.entry(n.as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    for (task, (_, id)) in acked.tasks.iter() {
        assert_eq!(
            seen.get(id).copied().unwrap_or(0),
            1,
            "task {task} ({id}) ran {:?} times",
            seen.get(id)
        );
    }
}
