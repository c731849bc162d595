//! `template.yaml`: parsing and checking a template's manifest.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::TemplateError;
use crate::schema::Schema;

/// A checked manifest.
#[derive(Debug)]
pub struct Manifest {
    pub version: semver::Version,
    pub description: String,
    /// The data schema; `None` accepts any object.
    pub data: Option<Schema>,
    pub actions: BTreeMap<String, ActionPolicy>,
    pub on_delete: Vec<String>,
}

/// What the manifest says about one action.
#[derive(Debug, Default)]
pub struct ActionPolicy {
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub recurring: Option<Duration>,
    pub args: Option<Schema>,
}

/// `retry: {tries, delay, backoff}`: `tries` runs in all, waiting `delay`,
/// then `delay * backoff`, `delay * backoff^2`... between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub tries: u32,
    pub delay: Duration,
    pub backoff: f64,
}

impl RetryPolicy {
    /// The wait before run number `attempt` (2 for the first retry).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(2) as i32;
        self.delay.mul_f64(self.backoff.powi(exp).min(1e6))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: Option<Value>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    actions: Option<BTreeMap<String, Option<RawPolicy>>>,
    #[serde(default)]
    on_delete: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    timeout: Option<f64>,
    retry: Option<RawRetry>,
    recurring: Option<f64>,
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    tries: u32,
    #[serde(default)]
    delay: f64,
    #[serde(default = "one")]
    backoff: f64,
}

fn one() -> f64 {
    1.0
}

const KNOWN_KEYS: &str = "version, description, data, actions, on_delete";

fn seconds(path: &Path, field: &str, v: f64) -> Result<Duration, TemplateError> {
    if !(v.is_finite() && v > 0.0 && v < 1e9) {
        return Err(TemplateError::new(
            path,
            Some(field),
            format!("must be a positive number of seconds, got {v}"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

impl Manifest {
    /// Parses and checks the manifest text of `path`. Kept whole (about 110
    /// lines): one pass over the manifest's fields in their documented
    /// order, each error naming its field.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, TemplateError> {
        let raw: RawManifest = crate::yaml::from_str(text).map_err(|e| {
            let msg = crate::yaml::describe_error(&e, &path.display().to_string(), text);
            // The parser lists the keys expected where the unknown one is.
            if msg.contains("unknown field") && !msg.contains("expected one of") {
                TemplateError::new(
                    path,
                    None,
                    format!("{msg} (the known keys are: {KNOWN_KEYS})"),
                )
            } else {
                TemplateError::new(path, None, format!("not a valid manifest: {msg}"))
            }
        })?;
        let version = match raw.version {
            None => {
                return Err(TemplateError::new(
                    path,
                    Some("version"),
                    "is required: add `version: 1.0.0` (a semantic version)",
                ))
            }
            Some(v) => {
                let s = match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                semver::Version::parse(&s).map_err(|e| {
                    TemplateError::new(
                        path,
                        Some("version"),
                        format!("`{s}` is not a semantic version ({e}); write it like `1.2.0`"),
                    )
                })?
            }
        };
        let data = match raw.data {
            None | Some(Value::Null) => None,
            Some(schema) => Some(
                Schema::compile(&schema).map_err(|e| TemplateError::new(path, Some("data"), e))?,
            ),
        };
        let mut actions = BTreeMap::new();
        for (name, policy) in raw.actions.unwrap_or_default() {
            let Some(p) = policy else {
                actions.insert(name, ActionPolicy::default());
                continue;
            };
            let field = |k: &str| format!("actions.{name}.{k}");
            let timeout = p
                .timeout
                .map(|t| seconds(path, &field("timeout"), t))
                .transpose()?;
            let recurring = p
                .recurring
                .map(|t| seconds(path, &field("recurring"), t))
                .transpose()?;
            let retry = match p.retry {
                None => None,
                Some(r) => {
                    if r.tries == 0 || r.tries > 1000 {
                        return Err(TemplateError::new(
                            path,
                            Some(&field("retry.tries")),
                            "must be between 1 and 1000 (the number of runs in all)",
                        ));
                    }
                    if !(r.delay.is_finite() && r.delay >= 0.0 && r.delay < 1e6) {
                        return Err(TemplateError::new(
                            path,
                            Some(&field("retry.delay")),
                            "must be a number of seconds, zero or more",
                        ));
                    }
                    if !(r.backoff.is_finite() && r.backoff >= 1.0 && r.backoff <= 100.0) {
                        return Err(TemplateError::new(
                            path,
                            Some(&field("retry.backoff")),
                            "must be a factor between 1 and 100",
                        ));
                    }
                    Some(RetryPolicy {
                        tries: r.tries,
                        delay: Duration::from_secs_f64(r.delay),
                        backoff: r.backoff,
                    })
                }
            };
            let args = match p.args {
                None | Some(Value::Null) => None,
                Some(schema) => Some(
                    Schema::compile(&schema)
                        .map_err(|e| TemplateError::new(path, Some(&field("args")), e))?,
                ),
            };
            actions.insert(
                name,
                ActionPolicy {
                    timeout,
                    retry,
                    recurring,
                    args,
                },
            );
        }
        // The robot runs these with no arguments: a schema that refuses
        // none would keep them from ever running, silently.
        let on_delete = raw.on_delete.clone().unwrap_or_default();
        for (name, policy) in &actions {
            let why = if policy.recurring.is_some() {
                "a recurring action is queued with no arguments"
            } else if on_delete.contains(name) {
                "an `on_delete` action runs with no arguments"
            } else {
                continue;
            };
            if let Some(schema) = &policy.args {
                if let Err(e) = schema.prepare(Value::Object(Default::default())) {
                    return Err(TemplateError::new(
                        path,
                        Some(&format!("actions.{name}.args")),
                        format!("{why}, but this schema refuses none ({e}): give each required argument a default, or drop `required`"),
                    ));
                }
            }
        }
        Ok(Manifest {
            version,
            description: raw.description.unwrap_or_default(),
            data,
            actions,
            on_delete: raw.on_delete.unwrap_or_default(),
        })
    }

    /// Checks that every action the manifest names exists in the code.
    pub fn check_actions(&self, path: &Path, code_actions: &[String]) -> Result<(), TemplateError> {
        let known = |a: &str| code_actions.iter().any(|c| c == a);
        let list = if code_actions.is_empty() {
            "(none)".to_owned()
        } else {
            code_actions.join(", ")
        };
        for (i, a) in self.on_delete.iter().enumerate() {
            if !known(a) {
                return Err(TemplateError::new(
                    path,
                    Some(&format!("on_delete[{i}]")),
                    format!("names `{a}`, which is not an action of the template's code; define it or pick one of: {list}"),
                ));
            }
        }
        for (name, policy) in &self.actions {
            if !known(name) {
                let what = if policy.recurring.is_some() {
                    format!("actions.{name}.recurring")
                } else {
                    format!("actions.{name}")
                };
                return Err(TemplateError::new(
                    path,
                    Some(&what),
                    format!("names `{name}`, which is not an action of the template's code; define it or pick one of: {list}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, TemplateError> {
        Manifest::parse(Path::new("t/template.yaml"), text)
    }

    /// The mistakes a template author makes on day two, each answered with
    /// the file, the line, the field and the fix.
    #[test]
    fn day_two_mistakes_point_at_the_fix() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let typo = err("version: 1.0.0\nactions:\n  go:\n    timout: 5\n");
        assert!(
            typo.contains("expected one of timeout, retry, recurring, args"),
            "{typo}"
        );
        assert!(!typo.contains("the known keys are: version"), "{typo}");
        assert!(typo.contains("t/template.yaml:4:5"), "{typo}");
        assert!(!typo.contains("<input>"), "{typo}");
        let refused = err("version: 1.0.0\nactions:\n  go:\n    recurring: 5\n    args: {type: object, required: [who]}\n");
        assert!(
            refused.contains("actions.go.args")
                && refused.contains("a recurring action is queued with no arguments")
                && refused.contains("give each required argument a default"),
            "{refused}"
        );
        let refused = err("version: 1.0.0\nactions:\n  bye:\n    args: {type: object, required: [who]}\non_delete: [bye]\n");
        assert!(
            refused.contains("an `on_delete` action runs with no arguments"),
            "{refused}"
        );
        let unit = err("version: 1.0.0\nactions:\n  go:\n    recurring: 5s\n");
        assert!(unit.contains("`recurring` takes a number"), "{unit}");
        let dup = err("version: 1.0.0\nversion: 1.0.1\n");
        assert!(
            dup.contains("only once") && !dup.contains("DuplicateKeyPolicy"),
            "{dup}"
        );
        let indent = err("version: 1.0.0\nactions:\n  go:\n    timeout: 5\n   retry: {tries: 2}\n");
        assert!(indent.contains("line 5 is not indented"), "{indent}");
        let top = err("version: 1.0.0\nactoins: {}\n");
        assert!(top.contains("actoins"), "{top}");
        let default = err(
            "version: 1.0.0\ndata: {type: object, properties: {every: {type: integer, default: \"1h\"}}}\n",
        );
        assert!(
            default.contains("field `data`") || default.contains("data"),
            "{default}"
        );
        assert!(default.contains("default of `/every`"), "{default}");
    }

    #[test]
    fn the_design_example_parses() {
        let m = parse(
            r#"
version: 1.2.0
description: A machine we manage over SSH
data:
  type: object
  required: [hostname]
  properties:
    hostname: {type: string}
    port: {type: integer, default: 22}
actions:
  install:
    timeout: 300
    retry: {tries: 4, delay: 2, backoff: 2}
  create_vm:
    args:
      type: object
      required: [name]
      properties: {name: {type: string}, memory: {type: integer, default: 1024}}
  monitor:
    recurring: 30
on_delete: [uninstall]
"#,
        )
        .unwrap();
        assert_eq!(m.version, semver::Version::new(1, 2, 0));
        let r = m.actions["install"].retry.unwrap();
        assert_eq!(r.delay_before(2), Duration::from_secs(2));
        assert_eq!(r.delay_before(3), Duration::from_secs(4));
        assert_eq!(r.delay_before(4), Duration::from_secs(8));
        assert_eq!(
            m.actions["monitor"].recurring,
            Some(Duration::from_secs(30))
        );
        assert_eq!(m.on_delete, vec!["uninstall"]);
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let e = parse("description: x\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("version"));
        let e = parse("version: one\n").unwrap_err();
        assert!(e.to_string().contains("semantic version"), "{e}");
        let e = parse("version: 1.0.0\ncolour: red\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = parse("version: 1.0.0\ndata: {type: 12}\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data"));
        let e = parse("version: 1.0.0\nactions: {a: {timeout: -1}}\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("actions.a.timeout"));
        let e = parse("version: 1.0.0\nactions: {a: {retry: {tries: 0}}}\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("actions.a.retry.tries"));
    }

    #[test]
    fn actions_named_by_the_manifest_must_exist() {
        let m = parse("version: 1.0.0\non_delete: [gone]\n").unwrap();
        let e = m
            .check_actions(Path::new("t"), &["install".into()])
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("on_delete[0]"));
        let m = parse("version: 1.0.0\nactions: {watch: {recurring: 5}}\n").unwrap();
        let e = m.check_actions(Path::new("t"), &[]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("actions.watch.recurring"));
    }
}
