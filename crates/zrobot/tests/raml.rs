//! zrobot's API against 0-robot's: every response body of a real robot
//! process is checked against the type 0-robot's RAML (`tests/raml/`, which
//! its clients were generated from) gives that endpoint and status. The
//! RAML's types are resolved from the file, not restated here: `X[]` is a
//! list of X, a type may extend another (`type: Service`), a property is
//! required unless it says `required: false` (or ends in `?`), an `enum`
//! lists the values allowed. Additions are welcome (a field the RAML does
//! not name passes); renames, missing fields and other types are not.

mod util;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Map, Value};
use util::*;

/// The RAML, as YAML read into JSON.
struct Raml {
    types: Map<String, Value>,
    /// `(METHOD, path template, status, body type)` of every response.
    responses: Vec<(String, String, u16, Option<Value>)>,
}

impl Raml {
    fn load() -> Raml {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/raml/main.raml");
        let text = std::fs::read_to_string(&path).unwrap();
        let root: Value = zrobot_core::yaml::from_str(&text).unwrap();
        let types = root["types"].as_object().expect("a types section").clone();
        let mut responses = Vec::new();
        resources(&root, "", &mut responses);
        assert!(responses.len() > 20, "{responses:?}");
        Raml { types, responses }
    }

    /// The body type of `method path` answering `status`: `None` if the RAML
    /// has no such response, `Some(None)` if it has one without a body.
    fn body_type(&self, method: &str, path: &str, status: u16) -> Option<Option<&Value>> {
        self.responses
            .iter()
            .find(|(m, p, s, _)| m == method && *s == status && same_route(p, path))
            .map(|(_, _, _, t)| t.as_ref())
    }

    /// Where `value` differs from the type `spec` (a type expression or a
    /// type declaration), each as `path: what`.
    fn check(&self, spec: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        match spec {
            Value::String(expr) => self.check_expr(expr, value, at, out),
            Value::Object(decl) => {
                if let Some(Value::Array(allowed)) = decl.get("enum") {
                    if !allowed.contains(value) {
                        out.push(format!("{at}: {value} is not one of {allowed:?}"));
                    }
                    return;
                }
                if let Some(parent) = decl.get("type") {
                    self.check(parent, value, at, out);
                } else if !decl.contains_key("properties") {
                    return; // `any`
                }
                if let Some(Value::Object(props)) = decl.get("properties") {
                    let Value::Object(fields) = value else {
                        out.push(format!("{at}: expected an object, got {value}"));
                        return;
                    };
                    for (name, prop) in props {
                        let (name, optional_mark) = match name.strip_suffix('?') {
                            Some(n) => (n, true),
                            None => (name.as_str(), false),
                        };
                        let required = !optional_mark
                            && !matches!(prop.get("required"), Some(Value::Bool(false)))
                            && !prop
                                .get("required")
                                .and_then(Value::as_str)
                                .is_some_and(|r| r.eq_ignore_ascii_case("false"));
                        match fields.get(name) {
                            None if required => out.push(format!("{at}.{name}: required, missing")),
                            None => {}
                            Some(v) => self.check(prop, v, &format!("{at}.{name}"), out),
                        }
                    }
                }
            }
            Value::Null => {}
            other => panic!("a RAML type the test cannot read: {other}"),
        }
    }

    fn check_expr(&self, expr: &str, value: &Value, at: &str, out: &mut Vec<String>) {
        let expr = expr.trim();
        if let Some(item) = expr.strip_suffix("[]") {
            match value {
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        self.check_expr(item, v, &format!("{at}[{i}]"), out);
                    }
                }
                other => out.push(format!("{at}: expected a list of {item}, got {other}")),
            }
            return;
        }
        let fits = match expr {
            "string" | "datetime" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" | "bool" => value.is_boolean(),
            "object" => value.is_object(),
            "any" => true,
            named => {
                let decl = self
                    .types
                    .get(named)
                    .unwrap_or_else(|| panic!("the RAML names no type `{named}`"));
                return self.check(decl, value, at, out);
            }
        };
        if !fits {
            out.push(format!("{at}: expected {expr}, got {value}"));
        }
    }
}

/// Walks the resource tree: keys starting with `/` nest, `get`/`post`/...
/// hold `responses`.
fn resources(node: &Value, prefix: &str, out: &mut Vec<(String, String, u16, Option<Value>)>) {
    let Some(map) = node.as_object() else { return };
    for (key, child) in map {
        if key.starts_with('/') {
            resources(child, &format!("{prefix}{key}"), out);
        } else if ["get", "post", "put", "delete"].contains(&key.as_str()) {
            let responses = child.get("responses").and_then(Value::as_object);
            for (status, response) in responses.into_iter().flatten() {
                let body = response.get("body").and_then(|b| b.get("type")).cloned();
                out.push((
                    key.to_uppercase(),
                    prefix.to_owned(),
                    status.parse().unwrap(),
                    body,
                ));
            }
        }
    }
}

/// Whether the concrete `path` is an instance of the RAML's `template`.
fn same_route(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

const NODE_YAML: &str = r#"
version: 1.0.0
data:
  type: object
  properties:
    hostname: {type: string, default: h}
actions:
  install:
    args: {type: object, required: [force], properties: {force: {type: boolean}, level: {type: integer}}}
"#;
const NODE_LUA: &str = r#"
local n = {}
function n.install(self, args) self.state:set("actions", "install", "ok"); return {done = true} end
function n.fail(self) error("on purpose") end
function n.slow(self) robot.sleep(5) end
return n
"#;

/// A client that speaks to the robot as 0-robot's clients do, and checks
/// each answer against the RAML.
struct Checker {
    raml: Raml,
    http: reqwest::Client,
    url: String,
    god: String,
    /// `(METHOD, path template, status)` checked.
    covered: BTreeSet<(String, String, u16)>,
    problems: Vec<String>,
}

impl Checker {
    async fn call(&mut self, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .header("ZrobotAdmin", format!("Bearer {}", self.god));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert_eq!(status, want, "{method} {path}: {text}");
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        match self.raml.body_type(method, path, status) {
            None => self.problems.push(format!(
                "{method} {path}: the RAML has no {status} response for this endpoint"
            )),
            Some(None) => {
                if !text.is_empty() {
                    self.problems.push(format!(
                        "{method} {path} {status}: the RAML gives no body, got {text}"
                    ));
                }
            }
            Some(Some(spec)) => {
                let spec = spec.clone();
                let mut out = Vec::new();
                self.raml.check(&spec, &value, "body", &mut out);
                for p in out {
                    self.problems.push(format!("{method} {path} {status}: {p}"));
                }
            }
        }
        if let Some((_, template, _, _)) = self
            .raml
            .responses
            .iter()
            .find(|(m, p, s, _)| m == method && *s == status && same_route(p, path))
        {
            self.covered
                .insert((method.to_owned(), template.clone(), status));
        }
        value
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_type_0_robot_gives_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("repo"),
        &[
            ("templates/node/template.yaml", NODE_YAML),
            ("templates/node/node.lua", NODE_LUA),
        ],
    );
    let url = format!("file://{}", repo.display());
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &url]);
    // reqwest is built without a TLS provider of its own (as in zrobot-client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut c = Checker {
        raml: Raml::load(),
        http: reqwest::Client::new(),
        url: robot.url.clone(),
        god: robot.god_token(),
        covered: BTreeSet::new(),
        problems: Vec::new(),
    };

    c.call("GET", "/robot/info", None, 200).await;
    c.call("GET", "/robot/metrics", None, 200).await;
    let hook = c
        .call(
            "POST",
            "/robot/webhooks",
            Some(json!({"kind": "eco", "url": "http://127.0.0.1:9/hook"})),
            201,
        )
        .await;
    c.call("GET", "/robot/webhooks", None, 200).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    c.call("DELETE", &format!("/robot/webhooks/{id}"), None, 204)
        .await;

    c.call("GET", "/templates", None, 200).await;
    let other = template_repo(
        &tmp.path().join("other"),
        &[
            ("templates/extra/template.yaml", "version: 0.1.0\n"),
            ("templates/extra/extra.lua", "return {go = function() end}"),
        ],
    );
    let other_url = format!("file://{}", other.display());
    c.call("POST", "/templates", Some(json!({"url": other_url})), 201)
        .await;
    c.call(
        "PUT",
        "/templates",
        Some(json!({"url": other_url, "branch": "master"})),
        204,
    )
    .await;

    let created = c
        .call(
            "POST",
            "/services",
            Some(json!({"template": "node", "name": "n1", "data": {"hostname": "a"}})),
            201,
        )
        .await;
    // 0-robot's clients send only what they set.
    c.call(
        "POST",
        "/services",
        Some(json!({"template": "node", "name": "n2"})),
        201,
    )
    .await;
    let guid = created["guid"].as_str().unwrap().to_owned();
    c.call("GET", "/services", None, 200).await;
    c.call("GET", "/services?name=n1&template_name=node", None, 200)
        .await;
    c.call("GET", &format!("/services/{guid}"), None, 200).await;
    c.call("GET", &format!("/services/{guid}/actions"), None, 200)
        .await;
    let task = c
        .call(
            "POST",
            &format!("/services/{guid}/task_list"),
            Some(json!({"action_name": "install", "args": {"force": true}})),
            201,
        )
        .await;
    let failing = c
        .call(
            "POST",
            &format!("/services/{guid}/task_list"),
            Some(json!({"action_name": "fail"})),
            201,
        )
        .await;
    let t = task["guid"].as_str().unwrap().to_owned();
    let f = failing["guid"].as_str().unwrap().to_owned();
    // Done, with a result; failed, with an eco.
    assert!(
        eventually_async(std::time::Duration::from_secs(30), || {
            let (http, url, god, guid, f) = (
                c.http.clone(),
                c.url.clone(),
                c.god.clone(),
                guid.clone(),
                f.clone(),
            );
            async move {
                let task: Value = http
                    .get(format!("{url}/services/{guid}/task_list/{f}"))
                    .header("ZrobotAdmin", format!("Bearer {god}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                task["state"] == "error"
            }
        })
        .await
    );
    c.call("GET", &format!("/services/{guid}/task_list/{t}"), None, 200)
        .await;
    let eco = c
        .call("GET", &format!("/services/{guid}/task_list/{f}"), None, 200)
        .await;
    assert!(eco["eco"].is_object(), "{eco}");
    c.call("GET", &format!("/services/{guid}/task_list"), None, 200)
        .await;
    // Query booleans as 0-robot's Python clients send them.
    c.call(
        "GET",
        &format!("/services/{guid}/task_list?all=True"),
        None,
        200,
    )
    .await;
    let slow = c
        .call(
            "POST",
            &format!("/services/{guid}/task_list"),
            Some(json!({"action_name": "slow"})),
            201,
        )
        .await;
    let queued = c
        .call(
            "POST",
            &format!("/services/{guid}/task_list"),
            Some(json!({"action_name": "install", "args": {"force": false}})),
            201,
        )
        .await;
    let _ = slow;
    let q = queued["guid"].as_str().unwrap();
    c.call(
        "DELETE",
        &format!("/services/{guid}/task_list/{q}"),
        None,
        204,
    )
    .await;
    c.call("GET", &format!("/services/{guid}/logs"), None, 200)
        .await;
    c.call(
        "GET",
        &format!("/services/{}/task_list/{}", guid, uuid::Uuid::new_v4()),
        None,
        404,
    )
    .await;
    c.call(
        "GET",
        &format!("/services/{}", uuid::Uuid::new_v4()),
        None,
        404,
    )
    .await;

    c.call(
        "POST",
        "/blueprints",
        Some(json!({"content": {
            "services": [{"node__b1": {"hostname": "b"}}],
            "actions": [{"service": "b1", "actions": ["install"], "args": {"force": true}}],
        }})),
        200,
    )
    .await;
    c.call("DELETE", &format!("/services/{guid}"), None, 204)
        .await;

    // Every endpoint of the RAML with a success body was called.
    let wanted: BTreeSet<(String, String, u16)> = c
        .raml
        .responses
        .iter()
        .filter(|(_, _, s, _)| (200..300).contains(s))
        .map(|(m, p, s, _)| (m.clone(), p.clone(), *s))
        .collect();
    let missed: Vec<_> = wanted.difference(&c.covered).collect();
    assert!(missed.is_empty(), "not exercised: {missed:?}");
    assert!(
        c.problems.is_empty(),
        "answers that 0-robot's clients would not read:\n{}",
        c.problems.join("\n")
    );
}

/// The checker itself: it must catch what it is there to catch.
#[test]
fn the_checker_refuses_what_the_raml_does_not_allow() {
    let raml = Raml::load();
    let check = |ty: &str, v: Value| {
        let mut out = Vec::new();
        raml.check(&Value::String(ty.into()), &v, "body", &mut out);
        out
    };
    // A schema where a list of names is asked.
    let bad = check(
        "Action[]",
        json!([{"name": "a", "arguments": {"type": "object"}}]),
    );
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].contains("body[0].arguments: expected a list of string"),
        "{bad:?}"
    );
    assert!(check(
        "Action[]",
        json!([{"name": "a", "arguments": ["x"], "extra": 1}])
    )
    .is_empty());
    // Inherited fields are required: ServiceCreated is a Service with a secret.
    let missing = check("ServiceCreated", json!({"secret": "s"}));
    assert!(
        missing.iter().any(|p| p == "body.guid: required, missing"),
        "{missing:?}"
    );
    // Enums.
    let state = check(
        "ServiceState",
        json!({"category": "c", "tag": "t", "state": "fine"}),
    );
    assert_eq!(state.len(), 1, "{state:?}");
    // Integers are not floats.
    let created = check(
        "Task",
        json!({"template_name": "t", "service_name": "s", "service_guid": "g", "guid": "g", "state": "new", "created": 1.5, "action_name": "a"}),
    );
    assert!(
        created
            .iter()
            .any(|p| p.contains("body.created: expected integer")),
        "{created:?}"
    );
    assert!(same_route(
        "/services/{service_guid}/task_list",
        "/services/abc/task_list?all=True"
    ));
    assert!(!same_route(
        "/services/{service_guid}",
        "/services/abc/task_list"
    ));
}
