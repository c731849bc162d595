//! `GET /events`: the robot's Server-Sent Events, read one by one.

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::Method;

use crate::wire::StreamEvent;
use crate::{Client, ClientError, Result};

/// What [`Client::events`] asks for.
#[derive(Debug, Clone, Default)]
pub struct EventsQuery {
    /// Only this service's events (its name or guid).
    pub service: Option<String>,
    /// Only the events of services of this template (its name, or the start of its UID).
    pub template: Option<String>,
    /// Only these kinds, comma-separated (`task`, `log`, `state.changed`...).
    pub kind: Option<String>,
    /// Follow the live events; otherwise end after those the robot keeps.
    pub follow: bool,
    /// Resume after this event id (`Last-Event-ID`).
    pub after: Option<u64>,
}

/// An open event stream.
pub struct EventStream {
    response: reqwest::Response,
    /// Bytes received and not yet parsed into events.
    pending: Vec<u8>,
    url: String,
}

impl Client {
    /// `GET /events`: opens the stream; read it with [`EventStream::next`].
    /// The request has no overall timeout (it lasts as long as the stream);
    /// the robot sends a comment every 15 s, so a dead connection shows.
    pub async fn events(&self, q: &EventsQuery) -> Result<EventStream> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = &q.service {
            query.push(("service", s));
        }
        if let Some(t) = &q.template {
            query.push(("template", t));
        }
        if let Some(k) = &q.kind {
            query.push(("kind", k));
        }
        if !q.follow {
            query.push(("follow", "false"));
        }
        let url = self.url_of("events", &query);
        let mut extra = HeaderMap::new();
        extra.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(after) = q.after {
            if let Ok(v) = HeaderValue::from_str(&after.to_string()) {
                extra.insert("last-event-id", v);
            }
        }
        let transport = |source| ClientError::Transport {
            method: Method::GET,
            url: url.to_string(),
            source,
        };
        let response = self
            .http
            .get(url.clone())
            .headers(self.credentials.headers())
            .headers(extra)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(transport)?;
            let message = match serde_json::from_slice::<crate::wire::Error>(&bytes) {
                Ok(e) => e.message,
                Err(_) => String::from_utf8_lossy(&bytes).trim().to_owned(),
            };
            return Err(ClientError::Api {
                method: Method::GET,
                url: url.to_string(),
                code: status.as_u16(),
                message,
            });
        }
        Ok(EventStream {
            response,
            pending: Vec::new(),
            url: url.to_string(),
        })
    }
}

impl EventStream {
    /// The next event; `None` when the robot ended the stream.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>> {
        loop {
            if let Some(event) = self.parse_one()? {
                return Ok(Some(event));
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|source| ClientError::Transport {
                    method: Method::GET,
                    url: self.url.clone(),
                    source,
                })?;
            match chunk {
                Some(bytes) => self.pending.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// Takes one complete event (up to a blank line) from what was
    /// received; comments (keep-alives) and frames without data are skipped.
    fn parse_one(&mut self) -> Result<Option<StreamEvent>> {
        loop {
            let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") else {
                return Ok(None);
            };
            let frame = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            self.pending.drain(..end + 2);
            let data: Vec<&str> = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue;
            }
            let data = data.join("\n");
            return serde_json::from_str(&data)
                .map(Some)
                .map_err(|e| ClientError::Decode {
                    method: Method::GET,
                    url: self.url.clone(),
                    detail: format!("an event that does not parse: {e}"),
                });
        }
    }
}
