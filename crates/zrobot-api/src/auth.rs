//! Who a request comes from, as 0-robot's three headers say, and what that
//! grants.
//!
//! - `ZrobotAdmin: Bearer <jwt>` / `ZrobotUser: Bearer <jwt>`: JWTs verified
//!   with the robot's key, granting admin / user when their `scope` claim
//!   holds `user:memberof:<org>` of the admin / user organization.
//! - `ZrobotSecret: Bearer <s1> <s2> ...`: secrets handed out at service
//!   creation; each grants its service. The robot keeps only SHA-256 hashes,
//!   finds a secret's service by its hash in one lookup, and bounds how many
//!   secrets (and bytes) one header may carry.
//! - The god token, accepted in any of the three headers: grants everything
//!   and is the only credential that shows service data.
//!
//! A service's endpoints need its secret, the god token or an admin; a user
//! JWT creates services and gets their secrets, and reaches no service by
//! itself. A public service may be read and have actions scheduled by anyone.
//!
//! With no JWT key (hence no organization) the robot is open: every request
//! is an admin's, though data still needs the god token.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, StatusCode};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zrobot_client::{ADMIN_HEADER, SECRET_HEADER, USER_HEADER};
use zrobot_core::{Robot, Service};

use crate::error::ApiError;

/// How callers are authenticated.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// The file JWTs are verified with: an HS256 secret (its bytes, trailing
    /// whitespace trimmed), or an RSA or EC public key in PEM.
    pub jwt_key_file: Option<PathBuf>,
    /// The organization whose members are admins (`user:memberof:<org>`).
    pub admin_organization: Option<String>,
    /// The organization whose members are users.
    pub user_organization: Option<String>,
    /// The god token (development only): grants everything, shows data.
    pub god_token: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    // The god token must not reach logs through `Debug`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwt_key_file", &self.jwt_key_file)
            .field("admin_organization", &self.admin_organization)
            .field("user_organization", &self.user_organization)
            .field("god_token", &self.god_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl AuthConfig {
    /// No authentication: the robot is open.
    pub fn open() -> AuthConfig {
        AuthConfig::default()
    }

    /// Whether every request is allowed as an admin's.
    pub fn is_open(&self) -> bool {
        self.jwt_key_file.is_none()
            && self.admin_organization.is_none()
            && self.user_organization.is_none()
    }
}

/// Why an [`AuthConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("an admin or user organization is set but no JWT key: give the key file that verifies the organization's tokens (--jwt-key)")]
    OrganizationWithoutKey,
    #[error("a JWT key is set but no organization: name the admin organization (--admin-organization) whose members the key's tokens grant")]
    KeyWithoutOrganization,
    #[error("cannot read the JWT key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error(
        "organization name `{0}` is empty or holds whitespace; give the organization's exact name"
    )]
    BadOrganization(String),
    #[error("the god token is empty; leave it unset or give a real token")]
    EmptyGodToken,
}

/// A JWT verifier and the organizations it grants.
struct Jwt {
    key: DecodingKey,
    validation: Validation,
}

/// The compiled [`AuthConfig`]: checks the credentials of each request.
pub struct Auth {
    jwt: Option<Jwt>,
    admin_org: Option<String>,
    user_org: Option<String>,
    god_token: Option<String>,
}

impl Auth {
    /// Reads the key file and checks the configuration.
    pub fn new(config: &AuthConfig) -> Result<Auth, AuthConfigError> {
        for org in [&config.admin_organization, &config.user_organization]
            .into_iter()
            .flatten()
        {
            if org.is_empty() || org.chars().any(char::is_whitespace) {
                return Err(AuthConfigError::BadOrganization(org.clone()));
            }
        }
        if config.god_token.as_deref() == Some("") {
            return Err(AuthConfigError::EmptyGodToken);
        }
        let has_org = config.admin_organization.is_some() || config.user_organization.is_some();
        let jwt = match (&config.jwt_key_file, has_org) {
            (None, false) => None,
            (None, true) => return Err(AuthConfigError::OrganizationWithoutKey),
            (Some(_), false) => return Err(AuthConfigError::KeyWithoutOrganization),
            (Some(path), true) => Some(read_key(path)?),
        };
        Ok(Auth {
            jwt,
            admin_org: config.admin_organization.clone(),
            user_org: config.user_organization.clone(),
            god_token: config.god_token.clone(),
        })
    }

    fn is_open(&self) -> bool {
        self.jwt.is_none()
    }

    fn is_god(&self, token: &str) -> bool {
        self.god_token
            .as_deref()
            .is_some_and(|god| bool::from(god.as_bytes().ct_eq(token.as_bytes())))
    }

    /// Who sent a request with these headers. A malformed header, or a JWT
    /// that is invalid or expired, is refused (401); a valid JWT without the
    /// organization's scope grants nothing, and later refusals say why.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let mut caller = Caller {
            admin: self.is_open(),
            ..Caller::default()
        };
        let jwt_headers = [
            (ADMIN_HEADER, &self.admin_org, Level::Admin),
            (USER_HEADER, &self.user_org, Level::User),
        ];
        for (header, org, level) in jwt_headers {
            let Some(tokens) = bearer(headers, header)? else {
                continue;
            };
            caller.presented = true;
            let token = tokens.trim();
            if self.is_god(token) {
                caller.god = true;
                continue;
            }
            let Some(jwt) = &self.jwt else {
                continue;
            };
            let claims = jwt.verify(header, token)?;
            let Some(org) = org else {
                caller.refusals.push(format!(
                    "this robot has no {} organization, so a {header} token grants nothing",
                    level.name()
                ));
                continue;
            };
            if has_scope(&claims, &format!("user:memberof:{org}")) {
                match level {
                    Level::Admin => caller.admin = true,
                    Level::User => caller.user = true,
                }
            } else {
                caller.refusals.push(format!(
                    "the {header} token lacks the scope `user:memberof:{org}`; use a token of a member of `{org}`"
                ));
            }
        }
        if let Some(secrets) = secret_list(headers)? {
            caller.presented = true;
            for secret in secrets {
                if self.is_god(secret) {
                    caller.god = true;
                } else {
                    caller.secret_hashes.push(hash_secret(secret));
                }
            }
        }
        Ok(caller)
    }
}

/// The most secrets one `ZrobotSecret` header may carry. Each costs a hash
/// and a lookup, so an anonymous request must not be able to ask for many.
pub const MAX_SECRETS: usize = 256;
/// The longest secret accepted (the robot's own are 64 characters).
pub const MAX_SECRET_LEN: usize = 256;
/// The largest `ZrobotSecret` header accepted, in bytes.
pub const MAX_SECRET_HEADER: usize = 32 * 1024;

/// The secrets of the `ZrobotSecret` header, within the limits above: a
/// header too large or with too many secrets is refused with 431, one
/// malformed or oversized secret with 400, before anything is hashed.
fn secret_list(headers: &HeaderMap) -> Result<Option<Vec<&str>>, ApiError> {
    let mut values = headers.get_all(SECRET_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!(
            "the {SECRET_HEADER} header is given more than once; send one header with every secret separated by spaces"
        )));
    }
    if value.len() > MAX_SECRET_HEADER {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the {SECRET_HEADER} header has {} bytes, more than the {MAX_SECRET_HEADER} accepted; send only the secrets of the services the request is about",
                value.len()
            ),
        ));
    }
    let Some(rest) = bearer(headers, SECRET_HEADER)? else {
        return Ok(None);
    };
    let secrets: Vec<&str> = rest.split_whitespace().collect();
    if secrets.len() > MAX_SECRETS {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the {SECRET_HEADER} header carries {} secrets, more than the {MAX_SECRETS} accepted; send only the secrets of the services the request is about",
                secrets.len()
            ),
        ));
    }
    if let Some(long) = secrets.iter().find(|s| s.len() > MAX_SECRET_LEN) {
        return Err(ApiError::bad_request(format!(
            "a secret of the {SECRET_HEADER} header has {} characters, more than the {MAX_SECRET_LEN} a secret may have; send the secrets service creation returned",
            long.len()
        )));
    }
    Ok(Some(secrets))
}

#[derive(Clone, Copy)]
enum Level {
    Admin,
    User,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Admin => "admin",
            Level::User => "user",
        }
    }
}

fn read_key(path: &Path) -> Result<Jwt, AuthConfigError> {
    let key_error = |reason: String| AuthConfigError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| key_error(e.to_string()))?;
    let (key, algorithms) = if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        if let Ok(k) = DecodingKey::from_rsa_pem(&bytes) {
            (
                k,
                vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
            )
        } else if let Ok(k) = DecodingKey::from_ec_pem(&bytes) {
            (k, vec![Algorithm::ES256, Algorithm::ES384])
        } else {
            return Err(key_error(
                "it is PEM but neither an RSA nor an EC public key; give the public key the tokens are signed for (RS256 or ES256)".to_owned(),
            ));
        }
    } else {
        let secret = bytes.trim_ascii_end();
        if secret.is_empty() {
            return Err(key_error(
                "it is empty; write the HS256 secret into it, or an RSA/EC public key in PEM"
                    .to_owned(),
            ));
        }
        (DecodingKey::from_secret(secret), vec![Algorithm::HS256])
    };
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    // Tokens from an identity provider name audiences the robot cannot know.
    validation.validate_aud = false;
    Ok(Jwt { key, validation })
}

impl Jwt {
    fn verify(&self, header: &str, token: &str) -> Result<Value, ApiError> {
        jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "has expired; get a new token".to_owned(),
                    ErrorKind::InvalidSignature => {
                        "has a signature the robot's key does not verify; use a token signed for this robot".to_owned()
                    }
                    ErrorKind::InvalidAlgorithm => {
                        "is signed with an algorithm the robot's key does not use".to_owned()
                    }
                    ErrorKind::MissingRequiredClaim(c) => {
                        format!("has no `{c}` claim; the robot accepts only tokens that expire")
                    }
                    ErrorKind::ImmatureSignature => "is not valid yet (`nbf`)".to_owned(),
                    _ => format!("is not a valid JWT ({e})"),
                };
                ApiError::unauthorized(format!("the {header} token {why}"))
            })
    }
}

/// The token(s) of a `<header>: Bearer <token>` header, if the header is there.
fn bearer<'h>(headers: &'h HeaderMap, header: &str) -> Result<Option<&'h str>, ApiError> {
    let Some(value) = headers.get(header) else {
        return Ok(None);
    };
    let malformed =
        || ApiError::unauthorized(format!("the {header} header must read `Bearer <token>`"));
    let value = value.to_str().map_err(|_| {
        ApiError::bad_request(format!(
            "the {header} header holds bytes that are not printable ASCII; tokens and secrets are printable ASCII"
        ))
    })?;
    let (scheme, rest) = value.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || rest.trim().is_empty() {
        return Err(malformed());
    }
    Ok(Some(rest))
}

/// Whether the `scope` claim (a list of strings, or one space-separated
/// string) holds `wanted`.
fn has_scope(claims: &Value, wanted: &str) -> bool {
    match claims.get("scope") {
        Some(Value::String(s)) => s.split_whitespace().any(|s| s == wanted),
        Some(Value::Array(list)) => list.iter().any(|s| s.as_str() == Some(wanted)),
        _ => false,
    }
}

/// The SHA-256 of a service secret, as the robot stores it (hex).
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// A new service secret: 244 random bits as 64 hex characters.
pub fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// What the credentials of one request grant.
#[derive(Debug, Default, Clone)]
pub struct Caller {
    pub god: bool,
    pub admin: bool,
    pub user: bool,
    /// Hashes of the service secrets presented.
    secret_hashes: Vec<String>,
    /// The services those secrets grant, found by [`Caller::resolve`].
    granted: HashSet<Uuid>,
    /// Some credential header was sent.
    presented: bool,
    /// Why presented JWTs granted nothing.
    refusals: Vec<String>,
}

impl Caller {
    /// Finds the services the presented secrets grant: one map lookup per
    /// secret (by its hash), whatever the number of services. The map is
    /// keyed by SHA-256 hashes, so its timing says nothing about a secret.
    pub fn resolve(mut self, robot: &Robot) -> Caller {
        for hash in &self.secret_hashes {
            if let Some(svc) = robot.service_by_secret_hash(hash) {
                self.granted.insert(svc.guid);
            }
        }
        self
    }

    /// Whether the caller presented a secret of `svc` (see [`Caller::resolve`]).
    pub fn holds_secret(&self, svc: &Service) -> bool {
        self.granted.contains(&svc.guid)
    }

    /// Whether service data may be shown (god mode only).
    pub fn sees_data(&self) -> bool {
        self.god
    }

    /// Whether `GET /services` lists `svc` to this caller.
    pub fn may_list(&self, svc: &Service) -> bool {
        self.god || self.admin || svc.public || self.holds_secret(svc)
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.god || self.admin {
            return Ok(());
        }
        Err(self.denied("an admin", "`ZrobotAdmin: Bearer <jwt>`"))
    }

    pub fn require_user(&self) -> Result<(), ApiError> {
        if self.god || self.admin || self.user {
            return Ok(());
        }
        Err(self.denied(
            "an admin or a user",
            "`ZrobotAdmin: Bearer <jwt>` or `ZrobotUser: Bearer <jwt>`",
        ))
    }

    /// What `svc`'s own endpoints need: its secret, the god token, or an
    /// admin. A user JWT alone reaches no service: it creates services and
    /// is handed their secrets.
    pub fn require_service(&self, svc: &Service) -> Result<(), ApiError> {
        if self.god || self.admin || self.holds_secret(svc) {
            return Ok(());
        }
        Err(self.denied(
            &format!("an admin or the secret of service `{}`", svc.name),
            "`ZrobotSecret: Bearer <secret>` with the secret its creation returned",
        ))
    }

    /// Reading `svc` and scheduling its actions: anyone if it is public,
    /// else as [`Caller::require_service`].
    pub fn require_service_use(&self, svc: &Service) -> Result<(), ApiError> {
        if svc.public {
            return Ok(());
        }
        self.require_service(svc)
    }

    pub(crate) fn denied(&self, who: &str, how: &str) -> ApiError {
        let mut message = format!("this needs {who}: send {how}");
        for r in &self.refusals {
            message.push_str("; ");
            message.push_str(r);
        }
        if self.presented {
            ApiError::forbidden(message)
        } else {
            ApiError::unauthorized(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a test secret of enough length";

    fn auth(
        admin: Option<&str>,
        user: Option<&str>,
        god: Option<&str>,
    ) -> (Auth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("jwt.key");
        std::fs::write(&key, [SECRET, b"\n"].concat()).unwrap();
        let config = AuthConfig {
            jwt_key_file: Some(key),
            admin_organization: admin.map(str::to_owned),
            user_organization: user.map(str::to_owned),
            god_token: god.map(str::to_owned),
        };
        (Auth::new(&config).unwrap(), dir)
    }

    fn jwt(scope: Value, exp_in: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        encode(
            &Header::new(Algorithm::HS256),
            &json!({"scope": scope, "exp": now + exp_in}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn admin_and_user_scopes() {
        let (auth, _dir) = auth(Some("admins"), Some("users"), None);
        let admin = jwt(json!(["user:memberof:admins"]), 60);
        let c = auth
            .caller(&headers(&[(ADMIN_HEADER, format!("Bearer {admin}"))]))
            .unwrap();
        assert!(c.admin && !c.user && !c.god);
        c.require_admin().unwrap();

        let user = jwt(json!("openid user:memberof:users"), 60);
        let c = auth
            .caller(&headers(&[(USER_HEADER, format!("bearer {user}"))]))
            .unwrap();
        assert!(c.user && !c.admin);
        c.require_user().unwrap();
        assert_eq!(c.require_admin().unwrap_err().status, StatusCode::FORBIDDEN);

        // A user token sent as admin lacks the admin scope: 403, and says so.
        let c = auth
            .caller(&headers(&[(ADMIN_HEADER, format!("Bearer {user}"))]))
            .unwrap();
        let e = c.require_admin().unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.message.contains("user:memberof:admins"), "{}", e.message);
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let (auth, _dir) = auth(Some("admins"), None, None);
        let expired = jwt(json!(["user:memberof:admins"]), -3600);
        let e = auth
            .caller(&headers(&[(ADMIN_HEADER, format!("Bearer {expired}"))]))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.message.contains("expired"), "{}", e.message);

        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"scope": ["user:memberof:admins"], "exp": 4_000_000_000u64}),
            &EncodingKey::from_secret(b"another key"),
        )
        .unwrap();
        let e = auth
            .caller(&headers(&[(ADMIN_HEADER, format!("Bearer {forged}"))]))
            .unwrap_err();
        assert!(e.message.contains("signature"), "{}", e.message);

        let e = auth
            .caller(&headers(&[(ADMIN_HEADER, "Token x".to_owned())]))
            .unwrap_err();
        assert!(e.message.contains("Bearer <token>"), "{}", e.message);

        // No credential at all: 401, naming what to send.
        let c = auth.caller(&HeaderMap::new()).unwrap();
        let e = c.require_user().unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.message.contains("ZrobotAdmin"), "{}", e.message);
    }

    #[test]
    fn god_token_in_any_header() {
        let (auth, _dir) = auth(Some("admins"), None, Some("godtoken"));
        for header in [ADMIN_HEADER, USER_HEADER, SECRET_HEADER] {
            let c = auth
                .caller(&headers(&[(header, "Bearer godtoken".to_owned())]))
                .unwrap();
            assert!(c.god && c.sees_data(), "{header}");
        }
        let c = auth
            .caller(&headers(&[(SECRET_HEADER, "Bearer godtokem".to_owned())]))
            .unwrap();
        assert!(!c.god);
    }

    #[test]
    fn open_robot_allows_everything_but_data() {
        let auth = Auth::new(&AuthConfig::open()).unwrap();
        let c = auth
            .caller(&headers(&[(ADMIN_HEADER, "Bearer not-a-jwt".to_owned())]))
            .unwrap();
        assert!(c.admin && !c.sees_data());
    }

    #[test]
    fn config_errors() {
        let only_org = AuthConfig {
            admin_organization: Some("a".into()),
            ..Default::default()
        };
        assert!(matches!(
            Auth::new(&only_org),
            Err(AuthConfigError::OrganizationWithoutKey)
        ));
        let only_key = AuthConfig {
            jwt_key_file: Some("/nonexistent".into()),
            ..Default::default()
        };
        assert!(matches!(
            Auth::new(&only_key),
            Err(AuthConfigError::KeyWithoutOrganization)
        ));
        let missing = AuthConfig {
            jwt_key_file: Some("/nonexistent/key".into()),
            admin_organization: Some("a".into()),
            ..Default::default()
        };
        let e = Auth::new(&missing).err().unwrap();
        assert!(e.to_string().contains("/nonexistent/key"), "{e}");
    }

    /// RS256 and ES256 tokens verify against their public key in PEM.
    #[test]
    fn public_key_algorithms() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for (alg, name) in [(Algorithm::RS256, "rs256"), (Algorithm::ES256, "es256")] {
            let config = AuthConfig {
                jwt_key_file: Some(fixtures.join(format!("jwt-{name}-public.pem"))),
                admin_organization: Some("admins".into()),
                ..Default::default()
            };
            let auth = Auth::new(&config).unwrap();
            let private = std::fs::read(fixtures.join(format!("jwt-{name}-private.pem"))).unwrap();
            let key = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&private).unwrap(),
                _ => EncodingKey::from_ec_pem(&private).unwrap(),
            };
            let claims = json!({"scope": ["user:memberof:admins"], "exp": 4_000_000_000u64});
            let token = encode(&Header::new(alg), &claims, &key).unwrap();
            let c = auth
                .caller(&headers(&[(ADMIN_HEADER, format!("Bearer {token}"))]))
                .unwrap();
            assert!(c.admin, "{name}");
            // An HS256 token made with the public key's bytes must not pass.
            let forged = encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(
                    &std::fs::read(config.jwt_key_file.as_ref().unwrap()).unwrap(),
                ),
            )
            .unwrap();
            let e = auth
                .caller(&headers(&[(ADMIN_HEADER, format!("Bearer {forged}"))]))
                .unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{name}");
        }
    }

    #[test]
    fn secrets_are_hashed() {
        let s = new_secret();
        assert_eq!(s.len(), 64);
        assert_ne!(s, new_secret());
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(has_scope(&json!({"scope": "a b"}), "b"));
        assert!(!has_scope(&json!({"scope": ["a b"]}), "b"));
    }
}
