//! Webhooks: URLs told about every failed task, with its eco as JSON or,
//! for a chat system (`format: slack | telegram`), as a short message that
//! names the service and action and gives the error (never the arguments
//! nor the trace, which may hold what a chat must not see).
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

/// The POSTs to make for one failed task: a body per URL (shared by the
/// URLs of one format).
struct Delivery {
    sends: Vec<(String, Arc<Vec<u8>>)>,
}

/// A webhook's URL fit for logs: its scheme and host only. Chat systems
/// carry their tokens in the path (Slack's `/services/T/B/SECRET`,
/// Telegram's `/bot<token>/`) and the query.
fn where_to(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => "(a webhook URL)".to_owned(),
    }
}

/// The chat formats a webhook may ask for.
const FORMATS: [&str; 2] = ["slack", "telegram"];

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
        if let Some(format) = &req.format {
            if !FORMATS.contains(&format.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "field `format`: `{format}` is not a webhook format; leave it out for the eco as JSON, or give one of: {}",
                    FORMATS.join(", ")
                )));
            }
            if format == "telegram" && chat_id(&req.url).is_none() {
                return Err(ApiError::bad_request(
                    "field `url`: a telegram webhook names its chat: https://api.telegram.org/bot<token>/sendMessage?chat_id=<chat>",
                ));
            }
        }
        let _edit = self.edit.lock().await;
        let mut list = self.list();
        if let Some(existing) = list.iter().find(|w| w.url == req.url) {
            return Ok((existing.clone(), false));
        }
        let hook = Webhook {
            id: uuid::Uuid::new_v4().to_string(),
            kind: req.kind,
            url: req.url,
            format: req.format,
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
        let hooks: Vec<(String, Option<String>)> = self
            .list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|w| (w.url.clone(), w.format.clone()))
            .collect();
        if hooks.is_empty() {
            return;
        }
        let mut json: Option<Arc<Vec<u8>>> = None;
        let mut sends = Vec::with_capacity(hooks.len());
        for (url, format) in hooks {
            let body = match format.as_deref() {
                None => json
                    .get_or_insert_with(|| {
                        let payload = WebhookEco {
                            service: service.guid,
                            service_name: service.name.clone(),
                            template: task.template_uid.clone(),
                            task_guid: task.guid,
                            action_name: task.action_name.clone(),
                            args: task.args.clone(),
                            eco: wire::eco(eco),
                        };
                        Arc::new(serde_json::to_vec(&payload).unwrap_or_default())
                    })
                    .clone(),
                Some(chat) => Arc::new(chat_body(chat, &url, &chat_text(service, task, eco))),
            };
            sends.push((url, body));
        }
        match self.queue.try_send(Delivery { sends }) {
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

/// The message a chat receives about a failed task.
fn chat_text(service: &Service, task: &TaskRecord, eco: &zrobot_core::Eco) -> String {
    format!(
        "zrobot: task `{}` of service `{}` ({}) failed: [{}] {}",
        task.action_name, service.name, task.template_uid, eco.category, eco.message
    )
}

/// The body of a chat format: Slack's incoming webhooks take `{text}`,
/// Telegram's `sendMessage` `{chat_id, text}` (its chat from the URL).
fn chat_body(format: &str, url: &str, text: &str) -> Vec<u8> {
    let body = match format {
        "telegram" => serde_json::json!({"chat_id": chat_id(url), "text": text}),
        _ => serde_json::json!({"text": text}),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The `chat_id` of a Telegram URL's query.
fn chat_id(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(k, _)| k == "chat_id")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
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
                for (url, body) in d.sends {
                    while in_flight.len() >= IN_FLIGHT {
                        in_flight.join_next().await;
                    }
                    in_flight.spawn(send(client.clone(), url, body));
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
            let url = where_to(&url);
            tracing::warn!(%url, "webhook delivery failed after {TRIES} tries: {why}");
            return;
        }
        tracing::debug!(url = %where_to(&url), attempt, "webhook delivery failed, retrying: {why}");
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}
