//! Webhooks: URLs told about every failed task.
//!
//! The list is a durable robot setting. An observer on the task path only
//! queues a delivery (a bounded queue: when it is full the delivery is dropped
//! with a warning, never waited for); one background task sends each with
//! bounded retries, so a dead webhook slows nothing but its own deliveries.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use zrobot_core::{Observer, Robot, Service, TaskRecord, TaskState};

use crate::error::ApiError;
use crate::wire::{self, Webhook, WebhookCreate, WebhookEco};

/// The robot setting that holds the list.
const SETTING: &str = "webhooks";
/// Deliveries queued at most; beyond, new ones are dropped.
const QUEUE: usize = 1024;
/// Deliveries in flight at most.
const IN_FLIGHT: usize = 16;
/// Tries of one delivery, and the pause before the second (doubling after).
const TRIES: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// One POST to make.
struct Delivery {
    urls: Vec<String>,
    body: Arc<Vec<u8>>,
}

/// The webhook list and the queue of deliveries.
pub struct Webhooks {
    robot: Robot,
    /// Read by the observer on the task path: a plain lock, held briefly.
    list: Arc<RwLock<Vec<Webhook>>>,
    /// Serializes changes, so that two requests cannot lose each other's.
    edit: tokio::sync::Mutex<()>,
}

/// The observer half: queues deliveries.
struct Notifier {
    list: Arc<RwLock<Vec<Webhook>>>,
    queue: mpsc::Sender<Delivery>,
}

impl Webhooks {
    /// Reads the list from the robot's settings, registers the observer, and
    /// returns the delivery loop to run until `shutdown`.
    pub fn start(robot: &Robot) -> (Webhooks, DeliveryLoop) {
        let list = match robot.setting(SETTING) {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the stored webhook list does not parse; starting with none");
                Vec::new()
            }),
        };
        let list = Arc::new(RwLock::new(list));
        let (tx, rx) = mpsc::channel(QUEUE);
        robot.add_observer(Arc::new(Notifier {
            list: list.clone(),
            queue: tx,
        }));
        let hooks = Webhooks {
            robot: robot.clone(),
            list,
            edit: Default::default(),
        };
        (hooks, DeliveryLoop { rx })
    }

    pub fn list(&self) -> Vec<Webhook> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds a webhook; the existing one if its URL is known (`false` then).
    pub async fn add(&self, req: WebhookCreate) -> Result<(Webhook, bool), ApiError> {
        if req.kind != "eco" {
            return Err(ApiError::bad_request(format!(
                "field `kind`: `{}` is not a webhook kind; the only kind is `eco`",
                req.kind
            )));
        }
        check_url(&req.url)?;
        let _edit = self.edit.lock().await;
        let mut list = self.list();
        if let Some(existing) = list.iter().find(|w| w.url == req.url) {
            return Ok((existing.clone(), false));
        }
        let hook = Webhook {
            id: uuid::Uuid::new_v4().to_string(),
            kind: req.kind,
            url: req.url,
        };
        list.push(hook.clone());
        self.save(list).await?;
        Ok((hook, true))
    }

    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        let _edit = self.edit.lock().await;
        let mut list = self.list();
        let before = list.len();
        list.retain(|w| w.id != id);
        if list.len() == before {
            return Err(ApiError::not_found(format!(
                "no webhook `{id}`; GET /robot/webhooks lists them"
            )));
        }
        self.save(list).await
    }

    async fn save(&self, list: Vec<Webhook>) -> Result<(), ApiError> {
        let value = serde_json::to_value(&list)
            .map_err(|e| ApiError::internal("encoding the webhook list", e))?;
        self.robot.put_setting(SETTING, value).await?;
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = list;
        Ok(())
    }
}

fn check_url(url: &str) -> Result<(), ApiError> {
    let bad = |why: String| {
        ApiError::bad_request(format!(
            "field `url`: `{url}` {why}; give an http:// or https:// URL"
        ))
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(format!("has scheme `{}`", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host".to_owned()));
    }
    Ok(())
}

impl Observer for Notifier {
    fn task_finished(&self, service: &Service, task: &TaskRecord) {
        if task.state != TaskState::Error {
            return;
        }
        let Some(eco) = &task.eco else { return };
        let urls: Vec<String> = self
            .list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|w| w.url.clone())
            .collect();
        if urls.is_empty() {
            return;
        }
        let payload = WebhookEco {
            service: service.guid,
            service_name: service.name.clone(),
            template: task.template_uid.clone(),
            task_guid: task.guid,
            action_name: task.action_name.clone(),
            args: task.args.clone(),
            eco: wire::eco(eco),
        };
        let Ok(body) = serde_json::to_vec(&payload) else {
            return;
        };
        match self.queue.try_send(Delivery {
            urls,
            body: Arc::new(body),
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => tracing::warn!(
                service = %service.name, task = %task.guid,
                "webhook queue full ({QUEUE} deliveries): this failure is not sent; are the webhooks reachable?"
            ),
            // The API stopped: nobody delivers any more.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Sends queued deliveries until shutdown.
pub struct DeliveryLoop {
    rx: mpsc::Receiver<Delivery>,
}

impl DeliveryLoop {
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut rx = self.rx;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match reqwest::Client::builder().timeout(SEND_TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are not sent");
                return;
            }
        };
        let deliver = async move {
            // Owned here, so that shutdown drops (and aborts) every delivery.
            let mut in_flight = JoinSet::new();
            while let Some(d) = rx.recv().await {
                for url in d.urls {
                    while in_flight.len() >= IN_FLIGHT {
                        in_flight.join_next().await;
                    }
                    in_flight.spawn(send(client.clone(), url, d.body.clone()));
                }
                while in_flight.try_join_next().is_some() {}
            }
        };
        tokio::select! {
            _ = shutdown => {}
            _ = deliver => {}
        }
    }
}

async fn send(client: reqwest::Client, url: String, body: Arc<Vec<u8>>) {
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=TRIES {
        let outcome = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.as_ref().clone())
            .send()
            .await;
        let why = match outcome {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) => format!("answered {}", resp.status()),
            // The URL is logged beside, without its credentials.
            Err(e) => e.without_url().to_string(),
        };
        if attempt == TRIES {
            let url = crate::url_without_credentials(&url);
            tracing::warn!(%url, "webhook delivery failed after {TRIES} tries: {why}");
            return;
        }
        tracing::debug!(url = %crate::url_without_credentials(&url), attempt, "webhook delivery failed, retrying: {why}");
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}
