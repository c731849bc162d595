//! `GET /events` against a real robot: the life of a service and its tasks
//! as Server-Sent Events, filters, resuming with `Last-Event-ID`, what each
//! credential sees, and a stream that ends with the robot.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use zrobot_client::{Credentials, EventStream, EventsQuery, ServiceCreate, StreamEvent, TaskState};

fn node(name: &str, public: bool) -> ServiceCreate {
    ServiceCreate {
        template: "node".into(),
        name: name.into(),
        data: json!({"hostname": "h1"}),
        public,
    }
}

fn follow() -> EventsQuery {
    EventsQuery {
        follow: true,
        ..EventsQuery::default()
    }
}

/// Reads events until one of `kind` for `service` comes (bounded).
async fn until(stream: &mut EventStream, kind: &str, service: &str) -> Vec<StreamEvent> {
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no `{kind}` of {service} within 10 s; saw {seen:?}"))
            .expect("the stream reads")
            .expect("the stream goes on");
        let done = e.kind == kind && e.service.as_ref().is_some_and(|s| s.name == service);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

fn of<'a>(events: &'a [StreamEvent], service: &str) -> Vec<&'a StreamEvent> {
    events
        .iter()
        .filter(|e| e.service.as_ref().is_some_and(|s| s.name == service))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_s_life_arrives_live_and_resumes_after_an_id() {
    let t = TestRobot::start(Auth::Open).await;
    let god = t.god();
    let mut all = god.events(&follow()).await.unwrap();
    let only_n2 = EventsQuery {
        service: Some("n2".into()),
        ..follow()
    };
    let mut n2_stream = god.events(&only_n2).await.unwrap();

    let n1 = god
        .create_service(&node("n1", false))
        .await
        .unwrap()
        .service;
    let task = god.schedule(n1.guid, "mark", json!({})).await.unwrap();
    let seen = until(&mut all, "task.finished", "n1").await;
    let kinds: Vec<&str> = of(&seen, "n1").iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "service.created",
            "log",
            "task.scheduled",
            "task.started",
            "state.changed",
            "log",
            "task.finished"
        ]
    );
    let n1_events = of(&seen, "n1");
    let scheduled = n1_events[2].task.as_ref().unwrap();
    assert_eq!(
        (scheduled.guid, scheduled.state),
        (task.guid, TaskState::New)
    );
    assert_eq!(
        n1_events[3].task.as_ref().unwrap().state,
        TaskState::Running
    );
    let change = n1_events[4].state.as_ref().unwrap();
    assert_eq!(
        (change.category.as_str(), change.tag.as_deref()),
        ("network", Some("tcp-22"))
    );
    let log = n1_events[5].log.as_ref().unwrap();
    assert_eq!(log.message, "marked");
    let finished = n1_events[6].task.as_ref().unwrap();
    // The line names the task whose action wrote it.
    assert_eq!(
        (log.action.as_deref(), log.task),
        (Some("mark"), Some(finished.guid))
    );
    assert_eq!(finished.state, TaskState::Ok);
    assert!(finished.duration.is_some());
    assert_eq!(n1_events[0].service.as_ref().unwrap().guid, n1.guid);
    assert!(seen.windows(2).all(|w| w[1].id == w[0].id + 1), "{seen:?}");

    // A failing task carries its eco.
    let n2 = god
        .create_service(&node("n2", false))
        .await
        .unwrap()
        .service;
    god.schedule(n2.guid, "fail", json!({})).await.unwrap();
    let seen = until(&mut n2_stream, "task.finished", "n2").await;
    assert!(
        seen.iter()
            .all(|e| e.service.as_ref().unwrap().name == "n2"),
        "the filtered stream has only n2: {seen:?}"
    );
    let failed = seen.last().unwrap().task.as_ref().unwrap();
    assert_eq!(failed.state, TaskState::Error);
    assert!(failed
        .eco
        .as_ref()
        .unwrap()
        .message
        .contains("boom on purpose"));

    // Resuming after the first event of n1's task: exactly what followed, then the end.
    let resume = EventsQuery {
        after: Some(n1_events[2].id),
        kind: Some("task".into()),
        service: Some("n1".into()),
        follow: false,
        ..EventsQuery::default()
    };
    let mut replay = god.events(&resume).await.unwrap();
    let mut kinds = Vec::new();
    while let Some(e) = replay.next().await.unwrap() {
        kinds.push(e.kind);
    }
    assert_eq!(kinds, ["task.started", "task.finished"]);

    // An id of another run: the stream says it cannot tell what was missed.
    let mut other_run = god
        .events(&EventsQuery {
            after: Some(7),
            ..EventsQuery::default()
        })
        .await
        .unwrap();
    let first = other_run.next().await.unwrap().unwrap();
    assert_eq!((first.kind.as_str(), first.missed), ("gap", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_sees_the_events_of_the_services_it_may_see() {
    let t = TestRobot::start(Auth::Jwt).await;
    let god = t.god();
    let mine = god.create_service(&node("mine", false)).await.unwrap();
    god.create_service(&node("theirs", false)).await.unwrap();
    god.create_service(&node("shared", true)).await.unwrap();
    let replay = EventsQuery::default();
    let names = |events: &[StreamEvent]| {
        let mut n: Vec<String> = events
            .iter()
            .filter_map(|e| e.service.as_ref().map(|s| s.name.clone()))
            .collect();
        n.dedup();
        n
    };
    let read_all = |client: zrobot_client::Client| async move {
        let mut s = client.events(&EventsQuery::default()).await.unwrap();
        let mut out = Vec::new();
        while let Some(e) = s.next().await.unwrap() {
            out.push(e);
        }
        out
    };
    // The god token and an admin see everything.
    assert_eq!(
        names(&read_all(god.clone()).await),
        ["mine", "theirs", "shared"]
    );
    assert_eq!(
        names(&read_all(t.admin()).await),
        ["mine", "theirs", "shared"]
    );
    // A secret: its service, and the public ones.
    let holder = t.as_(Credentials::secrets([mine.secret.clone()]));
    assert_eq!(names(&read_all(holder.clone()).await), ["mine", "shared"]);
    // Anonymous, and a user JWT alone: the public ones only, and not their
    // log lines (a public service's log needs its secret, as over REST).
    let anonymous = read_all(t.client.clone()).await;
    assert_eq!(names(&anonymous), ["shared"]);
    assert!(anonymous.iter().any(|e| e.kind == "service.created"));
    assert!(anonymous.iter().all(|e| e.kind != "log"), "{anonymous:?}");
    let held = read_all(holder.clone()).await;
    assert!(held
        .iter()
        .any(|e| e.kind == "log" && e.service.as_ref().unwrap().name == "mine"));
    assert!(held
        .iter()
        .all(|e| e.kind != "log" || e.service.as_ref().unwrap().name == "mine"));
    assert_eq!(
        names(&read_all(t.as_(Credentials::user(user_jwt()))).await),
        ["shared"]
    );
    // Asking for a service one may not see is refused, not silently empty.
    let err = holder
        .events(&EventsQuery {
            service: Some("theirs".into()),
            ..replay.clone()
        })
        .await
        .err()
        .expect("refused");
    assert_eq!(err.status(), Some(403), "{err}");
    // Bad filters and ids are clear errors.
    for (query, header, needle) in [
        ("?kind=tasks", None, "not a kind of event"),
        ("?color=red", None, "color"),
        ("", Some("yesterday"), "Last-Event-ID"),
    ] {
        let headers: Vec<(&str, String)> = header
            .map(|h| vec![("last-event-id", h.to_owned())])
            .unwrap_or_default();
        let (status, _, body) = t
            .raw("GET", &format!("/events{query}"), &headers, None)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_stream_ends_when_the_robot_stops() {
    let mut t = TestRobot::start(Auth::Open).await;
    let mut stream = t.god().events(&follow()).await.unwrap();
    let reading = tokio::spawn(async move { while let Ok(Some(_)) = stream.next().await {} });
    // Served streams do not hold the stop.
    t.stop_within(Duration::from_secs(5)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), reading)
        .await
        .expect("the stream ended with the robot")
        .unwrap();
}
