//! `GET /events`: the robot's events as Server-Sent Events, filtered to what
//! the caller may see and asked for, resumable with `Last-Event-ID`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use zrobot_core::events::{Event, Gap, Next, Subscription, What, KINDS};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Query;
use crate::wire;
use crate::AppState;

/// How often an idle stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only the events of this service (its name or guid).
    service: Option<String>,
    /// Only the events of services of this template: its name (`node`) or
    /// the start of its UID.
    template: Option<String>,
    /// Only these kinds, comma-separated; a prefix before a dot takes the
    /// whole family (`task` is `task.scheduled,task.started,task.finished`).
    kind: Option<String>,
    /// `false`: send the kept events (after `Last-Event-ID`) and end,
    /// rather than follow the live ones. Default `true`.
    follow: Option<bool>,
}

/// One Server-Sent Event of `GET /events`, as the stream frames it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EventFrame {
    /// The event's id, for `Last-Event-ID`; absent on a `gap`.
    id: Option<String>,
    /// The event's kind (as `kind` in `data`).
    event: String,
    /// A `StreamEvent`, as JSON.
    data: String,
}

/// What one subscriber asked for.
struct Wanted {
    service: Option<String>,
    template: Option<String>,
    kinds: Option<Vec<String>>,
}

impl Wanted {
    fn from_query(q: &EventQuery) -> Result<Wanted, ApiError> {
        let kinds = match &q.kind {
            None => None,
            Some(list) => {
                let mut kinds = Vec::new();
                for k in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    if !KINDS
                        .iter()
                        .any(|known| *known == k || known.starts_with(&format!("{k}.")))
                    {
                        return Err(ApiError::bad_request(format!(
                            "query `kind`: `{k}` is not a kind of event; the kinds are {} (a prefix such as `task` takes its family)",
                            KINDS.join(", ")
                        )));
                    }
                    kinds.push(k.to_owned());
                }
                Some(kinds)
            }
        };
        Ok(Wanted {
            service: q.service.clone(),
            template: q.template.clone(),
            kinds,
        })
    }

    fn matches(&self, e: &Event) -> bool {
        if let Some(s) = &self.service {
            if e.service.name != *s && e.service.guid.to_string() != *s {
                return false;
            }
        }
        if let Some(t) = &self.template {
            let template = e.service.template();
            if template.uid.name != *t && !template.uid_text.starts_with(t.as_str()) {
                return false;
            }
        }
        if let Some(kinds) = &self.kinds {
            let kind = e.what.kind();
            if !kinds.iter().any(|k| {
                kind == k || (kind.starts_with(k.as_str()) && kind[k.len()..].starts_with('.'))
            }) {
                return false;
            }
        }
        true
    }
}

/// The robot's events as Server-Sent Events (`text/event-stream`): each with
/// `id:` (one above the last), `event:` (its kind) and `data:` (a
/// `StreamEvent`). A caller sees the events of the services it may list
/// (god token, admin, their secrets, public services), log lines only of
/// those it holds (as `GET /services/{guid}/logs`); send
/// `Last-Event-ID` to resume after an event. Events older than the robot
/// keeps, or a subscriber too slow to keep up, give a `gap` event saying how
/// many were missed, and the stream goes on.
#[utoipa::path(get, path = "/events", tag = "robot",
    params(EventQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event")),
    responses(
        (status = 200, content_type = "text/event-stream", body = EventFrame,
         description = "A stream of events, each `data` a `StreamEvent`"),
        (status = 400, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<EventQuery>,
) -> Result<Response, ApiError> {
    let after = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "header `Last-Event-ID`: give the `id` of the last event received (a whole number)",
                    )
                })?,
        ),
    };
    let wanted = Wanted::from_query(&q)?;
    let events = state.robot.events();
    // One service: said at once if it cannot be seen, and read from its own
    // channel. One not created yet is watched for on the robot's stream.
    let subscription = match q.service.as_deref().and_then(|id| state.robot.lookup(id)) {
        Some(svc) => {
            caller.require_service_use(&svc)?;
            events.subscribe_to(svc.guid, after)
        }
        None => events.subscribe(after),
    };
    let follow = q.follow.unwrap_or(true);
    let stream = EventStream {
        subscription,
        caller: Arc::new(caller),
        wanted,
        follow,
        stopping: state.stopping.clone(),
        batch: String::new(),
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let batch = s.next().await?;
        Some((Ok::<_, Infallible>(batch), s))
    });
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    Ok((headers, Body::from_stream(body)).into_response())
}

/// One subscriber's stream.
struct EventStream {
    subscription: Subscription,
    caller: Arc<Caller>,
    wanted: Wanted,
    follow: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The frames gathered for the next write.
    batch: String,
}

/// How long a live stream gathers the events that follow its first, so
/// that a busy robot writes them to each reader in one chunk rather than
/// one write (and one wake-up) per event.
const GATHER: Duration = Duration::from_millis(10);
/// The most events gathered into one chunk.
const GATHER_MAX: usize = 1024;

impl EventStream {
    /// The next chunk of frames to send; `None` ends the stream (the robot
    /// stops, or the kept events are sent and the caller does not follow).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if !self.follow && !self.subscription.replaying() {
                return None;
            }
            // Nothing waiting: wait for the next event, then gather those
            // that follow it for a moment. Behind: take what is there.
            let mut taken = 0;
            if let Some(next) = self.subscription.try_next() {
                self.take(next);
            } else {
                let next = tokio::select! {
                    n = self.subscription.next() => n?,
                    // An idle stream says it is alive, so that proxies keep it.
                    _ = tokio::time::sleep(KEEP_ALIVE) => return Some(Bytes::from_static(b":\n\n")),
                    // A stream must not hold the robot's shutdown.
                    _ = self.stopping.wait_for(|s| *s) => return None,
                };
                self.take(next);
                if self.follow {
                    tokio::select! {
                        _ = tokio::time::sleep(GATHER) => {}
                        _ = self.stopping.wait_for(|s| *s) => return None,
                    }
                }
            }
            taken += 1;
            while taken < GATHER_MAX && (self.follow || self.subscription.replaying()) {
                match self.subscription.try_next() {
                    Some(next) => self.take(next),
                    None => break,
                }
                taken += 1;
            }
            if !self.batch.is_empty() {
                return Some(Bytes::from(std::mem::take(&mut self.batch)));
            }
        }
    }

    /// Adds what `next` gives to the batch, if this subscriber is to see it.
    fn take(&mut self, next: Next) {
        match next {
            Next::Event(e) => {
                if visible(&self.caller, &e) && self.wanted.matches(&e) {
                    self.batch.push_str(
                        e.encoded
                            .get_or_init(|| frame(&wire::event(&e), Some(e.id)).into()),
                    );
                }
            }
            Next::Gap(Gap::Missed(n)) => self.batch.push_str(&frame(&wire::gap(Some(n)), None)),
            Next::Gap(Gap::Unknown) => self.batch.push_str(&frame(&wire::gap(None), None)),
        }
    }
}

/// Whether `caller` may see event `e`: as it may list the service, except
/// log lines, which need what `GET /services/{guid}/logs` needs (a public
/// service's log is not public).
fn visible(caller: &Caller, e: &Event) -> bool {
    match e.what {
        What::Log(_) => caller.require_service(&e.service).is_ok(),
        _ => caller.may_list(&e.service),
    }
}

/// One Server-Sent Event: `id:` (none for a gap), `event:` its kind, and
/// `data:` the `StreamEvent` as JSON, on one line (JSON without spaces has
/// no line break: serde_json escapes those in strings). Made once per event
/// and shared by every subscriber that sends it.
fn frame(event: &wire::StreamEvent, id: Option<u64>) -> String {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    match id {
        Some(id) => format!("id: {id}\nevent: {}\ndata: {data}\n\n", event.kind),
        None => format!("event: {}\ndata: {data}\n\n", event.kind),
    }
}
