//! Service data and action arguments from the command line: `key=value`
//! pairs whose values read as YAML (`port=22` is a number, `tags=[a,b]` a
//! list) and whose dotted keys nest (`capacity.memory=1024`), over an
//! optional YAML or JSON file.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// One `-d`/`-a` pair, checked by clap so a malformed one is a usage error.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// The dotted key, split.
    pub path: Vec<String>,
    pub value: Value,
}

/// clap's value parser for `key=value`.
pub fn parse_key_value(s: &str) -> Result<KeyValue, String> {
    let (key, raw) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not key=value; write e.g. port=22"))?;
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    if path.iter().any(|p| p.trim().is_empty()) {
        return Err(format!(
            "`{key}` is not a key: write a name, or names joined by dots (capacity.memory=1024)"
        ));
    }
    Ok(KeyValue {
        path,
        value: yaml_value(raw),
    })
}

/// A value as YAML reads it; text that YAML reads as nothing (empty, or a
/// `#` comment) or cannot read at all stays the string it is, since that is
/// what someone typing `-d note=#1` means.
fn yaml_value(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::String(raw.to_owned());
    }
    match zrobot_core::yaml::from_str::<Value>(raw) {
        Ok(Value::Null) if !matches!(raw.trim(), "null" | "~" | "Null" | "NULL") => {
            Value::String(raw.to_owned())
        }
        Ok(v) => v,
        Err(_) => Value::String(raw.to_owned()),
    }
}

/// Reads a YAML or JSON file (by extension; YAML otherwise) as a JSON value.
pub fn read_file(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        return serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))
            .context("not valid JSON");
    }
    zrobot_core::yaml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            zrobot_core::yaml::describe_error(&e, &path.display().to_string(), &text)
        )
    })
}

/// The object made of `file` (if any) with `pairs` set over it in order.
/// `flag` names the option in errors (`-d`, `-a`).
pub fn build(file: Option<&Path>, pairs: &[KeyValue], flag: &str) -> Result<Value> {
    let mut root = match file {
        Some(path) => match read_file(path)? {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => bail!(
                "{} holds {}, not a mapping of keys to values",
                path.display(),
                kind(&other)
            ),
        },
        None => Map::new(),
    };
    for kv in pairs {
        set(&mut root, &kv.path, kv.value.clone())
            .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", kv.path.join(".")))?;
    }
    Ok(Value::Object(root))
}

fn set(map: &mut Map<String, Value>, path: &[String], value: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("a key has at least one part");
    if rest.is_empty() {
        map.insert(first.clone(), value);
        return Ok(());
    }
    let slot = map
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    match slot {
        Value::Object(inner) => set(inner, rest, value),
        other => Err(format!(
            "`{first}` is already {}, so it cannot hold `{}`",
            kind(other),
            rest.join(".")
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(s: &str) -> KeyValue {
        parse_key_value(s).unwrap()
    }

    #[test]
    fn values_read_as_yaml_and_dotted_keys_nest() {
        let v = build(
            None,
            &[
                kv("port=22"),
                kv("tags=[a, b]"),
                kv("capacity.memory=1024"),
                kv("capacity.cpu=2"),
                kv("name=web 1"),
                kv("on=true"),
                kv("answer=no"),
                kv("empty="),
                kv("note=#1"),
                kv("nothing=null"),
                kv("flow={x: 1}"),
                kv("bad=[unclosed"),
            ],
            "-d",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "port": 22, "tags": ["a", "b"], "capacity": {"memory": 1024, "cpu": 2},
                "name": "web 1", "on": true, "answer": "no", "empty": "", "note": "#1",
                "nothing": null, "flow": {"x": 1}, "bad": "[unclosed"
            })
        );
    }

    #[test]
    fn bad_pairs_say_why() {
        assert!(parse_key_value("port").unwrap_err().contains("key=value"));
        assert!(parse_key_value("a..b=1").unwrap_err().contains("not a key"));
        let e = build(None, &[kv("a=1"), kv("a.b=2")], "-d").unwrap_err();
        assert_eq!(
            e.to_string(),
            "-d a.b: `a` is already a number, so it cannot hold `b`"
        );
    }

    #[test]
    fn pairs_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data.yaml");
        std::fs::write(&f, "hostname: h\ncapacity: {memory: 1}\n").unwrap();
        let v = build(Some(&f), &[kv("capacity.cpu=4")], "-d").unwrap();
        assert_eq!(
            v,
            json!({"hostname": "h", "capacity": {"memory": 1, "cpu": 4}})
        );
        let j = dir.path().join("data.json");
        std::fs::write(&j, "[1]").unwrap();
        assert!(build(Some(&j), &[], "-d")
            .unwrap_err()
            .to_string()
            .contains("a list, not a mapping"));
    }
}
