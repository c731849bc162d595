//! Which robot a command talks to and with what credentials, how a service
//! named on the command line becomes a guid, and how the robot's refusals
//! become messages that say what to do, with the exit code scripts rely on.

use std::fmt;

use anyhow::Result;
use uuid::Uuid;
use zrobot_client::{Client, ClientError, Credentials, ServiceFilter};

use super::config::{Config, ConfigFile, RobotEntry, StoredSecret};

/// The environment variable that names the robot (a URL or a configured
/// name) when `--robot` does not.
pub const ROBOT_ENV: &str = "ZROBOT_URL";

/// Exit codes scripts can trust.
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;

/// An error with the exit code it should end the process with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

pub fn failure(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: message.into(),
    })
}

/// The exit code of an error: its own if it is a [`Failure`], else a
/// robot that could not be reached gives 3 and anything else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return match c {
                ClientError::Transport { .. } | ClientError::Decode { .. } => EXIT_UNREACHABLE,
                ClientError::InvalidUrl { .. } => EXIT_USAGE,
                ClientError::Api { .. } | ClientError::Redirect { .. } => EXIT_FAILURE,
            };
        }
    }
    EXIT_FAILURE
}

/// What every client command shares: the global flags and the config.
pub struct Ctx {
    pub json: bool,
    pub file: ConfigFile,
    pub config: Config,
    /// `--robot`, else `ZROBOT_URL`.
    robot_override: Option<String>,
}

/// The robot a command talks to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in the config; `None` for a URL given directly and unknown to the config.
    pub name: Option<String>,
    pub url: String,
    pub entry: RobotEntry,
}

impl Target {
    /// How messages name it: `robot `local` (http://...)`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("robot `{n}` ({})", self.url),
            None => format!("the robot at {}", self.url),
        }
    }

    /// The name under which its secrets are stored: its config name, or its URL.
    pub fn key(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.url.clone())
    }

    fn connect_hint(&self) -> String {
        let name = self.name.clone().unwrap_or_else(|| "NAME".to_owned());
        format!("zrobot robot connect {name} {} --jwt TOKEN", self.url)
    }
}

/// Which service secrets a request carries: only those the request needs, so
/// that a robot learns no secret of a service the request is not about.
pub enum Secrets {
    None,
    /// Every stored secret: only for `GET /services`, the one request that
    /// may need several (the client sends them in batches the robot accepts).
    All,
    One(Uuid),
}

/// What a request was about, for the hints of a refusal.
pub enum Need<'a> {
    /// Anyone may do it.
    Anyone,
    /// Admin only (templates, webhooks).
    Admin,
    /// Admin or user (creating services, blueprints).
    User,
    /// The service's secret, or admin.
    Service(&'a str),
}

impl Ctx {
    pub fn new(json: bool, robot_flag: Option<String>) -> Result<Ctx> {
        let file = ConfigFile::default_location();
        let config = file.load()?;
        let robot_override = robot_flag.or_else(|| {
            std::env::var(ROBOT_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty())
        });
        Ok(Ctx {
            json,
            file,
            config,
            robot_override,
        })
    }

    /// `--robot`, `ZROBOT_URL`, then the current robot of the config.
    pub fn target(&self) -> Result<Target> {
        if let Some(given) = &self.robot_override {
            if let Some(entry) = self.config.robots.get(given) {
                return Ok(Target {
                    name: Some(given.clone()),
                    url: entry.url.clone(),
                    entry: entry.clone(),
                });
            }
            if !given.contains("://") {
                return Err(failure(
                    EXIT_USAGE,
                    format!(
                        "no robot named `{given}` in {}: give a URL (http://HOST:PORT), or add it with `zrobot robot connect {given} URL`",
                        self.file.path().display()
                    ),
                ));
            }
            // A URL: use what the config knows of it, if it knows it.
            let url = normalize_url(given);
            let known = self
                .config
                .robots
                .iter()
                .find(|(_, e)| normalize_url(&e.url) == url);
            return Ok(match known {
                Some((name, entry)) => Target {
                    name: Some(name.clone()),
                    url: entry.url.clone(),
                    entry: entry.clone(),
                },
                None => {
                    Target {
                        name: None,
                        url: url.clone(),
                        entry: self.config.robots.get(&url).cloned().unwrap_or_else(|| {
                            RobotEntry {
                                url,
                                ..Default::default()
                            }
                        }),
                    }
                }
            });
        }
        let Some(current) = &self.config.current else {
            return Err(failure(
                EXIT_USAGE,
                format!(
                    "no robot chosen: connect one with `zrobot robot connect NAME URL` (a local one is http://127.0.0.1:6600), \
                     or give --robot NAME_OR_URL or {ROBOT_ENV}"
                ),
            ));
        };
        let entry = self.config.robots.get(current).ok_or_else(|| {
            failure(
                EXIT_USAGE,
                format!(
                    "the current robot `{current}` is not in {}; pick another with `zrobot robot use NAME`",
                    self.file.path().display()
                ),
            )
        })?;
        Ok(Target {
            name: Some(current.clone()),
            url: entry.url.clone(),
            entry: entry.clone(),
        })
    }

    /// A client of `target` carrying its credentials and the `secrets` asked for.
    pub fn client(&self, target: &Target, secrets: Secrets) -> Result<Client> {
        let e = &target.entry;
        let credentials = Credentials {
            admin_jwt: e.jwt.clone(),
            user_jwt: e.jwt.clone(),
            god_token: e.god_token.clone(),
            secrets: match secrets {
                Secrets::None => vec![],
                Secrets::All => e.secrets.values().map(|s| s.secret.clone()).collect(),
                Secrets::One(guid) => e
                    .secrets
                    .get(&guid)
                    .map(|s| vec![s.secret.clone()])
                    .unwrap_or_default(),
            },
        };
        Client::new(&target.url, credentials).map_err(|e| {
            failure(
                EXIT_USAGE,
                format!("{e}; fix it with `zrobot robot connect NAME URL`"),
            )
        })
    }

    /// The guid of the service `id` (a guid, or a name), and a client that
    /// carries its secret.
    pub async fn service(&self, target: &Target, id: &str) -> Result<(Uuid, Client)> {
        if let Ok(guid) = Uuid::parse_str(id) {
            return Ok((guid, self.client(target, Secrets::One(guid))?));
        }
        // A service this CLI created: its guid and secret are stored.
        if let Some((guid, _)) = target.entry.secret_by_name(id) {
            return Ok((guid, self.client(target, Secrets::One(guid))?));
        }
        let client = self.client(target, Secrets::All)?;
        let filter = ServiceFilter {
            name: Some(id.to_owned()),
            ..Default::default()
        };
        let found = client
            .services(&filter)
            .await
            .map_err(|e| explain(target, e, Need::Anyone))?;
        match found.first() {
            Some(svc) => Ok((svc.guid, self.client(target, Secrets::One(svc.guid))?)),
            None => Err(failure(
                EXIT_FAILURE,
                format!(
                    "{} has no service named `{id}` that you may see: check the name with `zrobot service list`; \
                     a service created elsewhere needs an admin or user JWT (`{}`)",
                    target.label(),
                    target.connect_hint()
                ),
            )),
        }
    }

    /// Stores the secrets of services just created on `target`.
    pub fn store_secrets(
        &mut self,
        target: &Target,
        created: &[(Uuid, String, String)],
    ) -> Result<()> {
        if created.is_empty() {
            return Ok(());
        }
        let key = target.key();
        let url = target.url.clone();
        self.config = self.file.update(|c| {
            let entry = c.robots.entry(key).or_insert_with(|| RobotEntry {
                url,
                ..Default::default()
            });
            for (guid, name, secret) in created {
                // A name is unique in a robot: an older secret of the same
                // name belongs to a service since deleted.
                entry.secrets.retain(|_, s| s.name != *name);
                entry.secrets.insert(
                    *guid,
                    StoredSecret {
                        name: name.clone(),
                        secret: secret.clone(),
                    },
                );
            }
            Ok(c.clone())
        })?;
        Ok(())
    }

    /// Forgets the secret of a deleted service.
    pub fn forget_secret(&mut self, target: &Target, guid: Uuid) -> Result<()> {
        if !target.entry.secrets.contains_key(&guid) {
            return Ok(());
        }
        let key = target.key();
        self.config = self.file.update(|c| {
            if let Some(entry) = c.robots.get_mut(&key) {
                entry.secrets.remove(&guid);
            }
            Ok(c.clone())
        })?;
        Ok(())
    }
}

/// `http://host:port` without a trailing slash, so the same robot matches
/// however it was typed.
pub fn normalize_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// Turns a client error into a message that names the cause and the fix.
pub fn explain(target: &Target, e: ClientError, need: Need<'_>) -> anyhow::Error {
    let label = target.label();
    match &e {
        ClientError::Transport { source, .. } => failure(
            EXIT_UNREACHABLE,
            format!(
                "cannot reach {label} ({}): is it running? start it with `zrobot server start`, \
                 or check the address with `zrobot robot list`",
                root_cause(source)
            ),
        ),
        ClientError::Decode { detail, .. } => failure(
            EXIT_UNREACHABLE,
            format!(
                "{label} answered something that is not the zrobot API ({detail}): is this the address of a zrobot?"
            ),
        ),
        ClientError::InvalidUrl { .. } => failure(EXIT_USAGE, e.to_string()),
        ClientError::Redirect { location, .. } => {
            let name = target.name.clone().unwrap_or_else(|| "NAME".to_owned());
            failure(
                EXIT_FAILURE,
                format!(
                    "{label}: {e}\n  hint: if {location} is the robot's real address, connect to it: `zrobot robot connect {name} URL`"
                ),
            )
        }
        ClientError::Api { code, message, .. } => {
            let hint = hint(target, *code, &need);
            let mut text = format!("{label} answered {code}: {message}");
            if !hint.is_empty() {
                text.push_str("\n  hint: ");
                text.push_str(&hint);
            }
            failure(EXIT_FAILURE, text)
        }
    }
}

/// What to do about a refusal (401/403) or a missing service (404).
fn hint(target: &Target, code: u16, need: &Need<'_>) -> String {
    let entry = &target.entry;
    let connect = target.connect_hint();
    // 401 means no credential was presented, or a token was refused.
    if code == 401 && entry.god_token.is_some() && entry.jwt.is_none() {
        let name = target.name.clone().unwrap_or_else(|| "NAME".to_owned());
        return format!(
            "the robot refused the god token sent: a robot takes one only when started with `--god`, and only the one of its data dir; \
             read it with `zrobot godtoken get --data-dir DIR` on the robot's host and connect again: \
             `zrobot robot connect {name} {} --god-token TOKEN`",
            target.url
        );
    }
    if code == 401 && entry.jwt.is_some() {
        return format!(
            "the robot refused the JWT sent (expired, or not signed with the robot's --jwt-key?); replace it: `{connect}`"
        );
    }
    match (code, need) {
        (401 | 403, Need::Admin) => format!(
            "this needs an admin: connect with a JWT of a member of the robot's admin organization, `{connect}`, \
             or --god-token TOKEN for a robot started with --god"
        ),
        (401 | 403, Need::User) => format!(
            "this needs an admin or a user: connect with a JWT of a member of the robot's admin or user organization, `{connect}`"
        ),
        (401 | 403, Need::Service(svc)) => {
            let stored = entry
                .secrets
                .iter()
                .any(|(g, s)| s.name == *svc || g.to_string() == *svc);
            if stored {
                format!(
                    "the secret stored for `{svc}` was refused (was the service deleted and made again elsewhere?); \
                     an admin JWT works too: `{connect}`"
                )
            } else {
                format!(
                    "no secret is stored for `{svc}` on {}: only the CLI that created a service keeps its secret; \
                     use an admin JWT instead (a user JWT creates services but reaches only those whose secret it holds): `{connect}`",
                    target.label()
                )
            }
        }
        (401 | 403, Need::Anyone) => format!("connect with a JWT: `{connect}`"),
        (404, Need::Service(_)) => "list the services with `zrobot service list`".to_owned(),
        _ => String::new(),
    }
}

/// The innermost cause of a transport error: "Connection refused", not
/// reqwest's "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}
