//! Blueprints: YAML (or its JSON form) listing services to create or update
//! and actions to schedule. Parsing and checking live here; execution is
//! [`crate::Robot::execute_blueprint`].

use serde_json::{Map, Value};

/// A blueprint that failed, naming the block at fault, and the other
/// blocks at fault found by the same check (each on a line of its own).
#[derive(Debug, Clone, PartialEq)]
pub struct BlueprintError {
    /// e.g. `services[1] (vm__vm1)` or `actions[0]`.
    pub block: String,
    pub message: String,
    /// Further problems, `(block, message)`: at most
    /// [`crate::schema::MAX_PROBLEMS`] in all.
    pub others: Vec<(String, String)>,
    /// Problems found past that bound, counted only.
    pub left_out: usize,
}

impl BlueprintError {
    pub fn new(block: impl Into<String>, message: impl Into<String>) -> BlueprintError {
        BlueprintError {
            block: block.into(),
            message: message.into(),
            others: Vec::new(),
            left_out: 0,
        }
    }
}

impl std::fmt::Display for BlueprintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.block, self.message)?;
        for (block, message) in &self.others {
            write!(f, "\n{block}: {message}")?;
        }
        if self.left_out > 0 {
            write!(f, "\n(and {} more problem(s))", self.left_out)?;
        }
        Ok(())
    }
}

impl std::error::Error for BlueprintError {}

/// The problems of one check of a blueprint, gathered so that all of them
/// (up to a bound) are told at once.
#[derive(Default)]
pub(crate) struct Problems(Option<BlueprintError>);

impl Problems {
    pub fn push(&mut self, e: BlueprintError) {
        match &mut self.0 {
            None => self.0 = Some(e),
            Some(first) if first.others.len() + 1 < crate::schema::MAX_PROBLEMS => {
                first.others.push((e.block, e.message))
            }
            Some(first) => first.left_out += 1,
        }
    }

    /// `Ok` when nothing was pushed.
    pub fn into_result(self) -> Result<(), BlueprintError> {
        match self.0 {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// One `template__name: data` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    pub block: String,
    pub template: String,
    pub name: String,
    pub data: Value,
}

/// One block of `actions`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionBlock {
    pub block: String,
    pub template: Option<String>,
    pub service: Option<String>,
    pub actions: Vec<String>,
    pub args: Value,
}

/// A checked blueprint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Blueprint {
    pub services: Vec<ServiceEntry>,
    pub actions: Vec<ActionBlock>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl Blueprint {
    /// Parses YAML text.
    pub fn from_yaml(text: &str) -> Result<Blueprint, BlueprintError> {
        let v: Value = crate::yaml::from_str(text)
            .map_err(|e| BlueprintError::new("blueprint", format!("not valid YAML: {e}")))?;
        Blueprint::from_value(&v)
    }

    /// Checks the JSON form of a blueprint.
    pub fn from_value(v: &Value) -> Result<Blueprint, BlueprintError> {
        let Value::Object(top) = v else {
            return Err(BlueprintError::new(
                "blueprint",
                format!(
                    "must be a mapping with `services` and/or `actions`, got {}",
                    kind(v)
                ),
            ));
        };
        let mut problems = Problems::default();
        for k in top.keys() {
            if k != "services" && k != "actions" {
                problems.push(BlueprintError::new(
                    "blueprint",
                    format!("unknown key `{k}`; a blueprint has `services` and `actions`"),
                ));
            }
        }
        let mut bp = Blueprint::default();
        match top.get("services") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match parse_service(i, item) {
                        Ok(entry) => bp.services.push(entry),
                        Err(e) => problems.push(e),
                    }
                }
            }
            Some(other) => problems.push(BlueprintError::new(
                "services",
                format!(
                    "must be a list of `template__name: data` entries, got {}",
                    kind(other)
                ),
            )),
        }
        match top.get("actions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match parse_block(&format!("actions[{i}]"), item) {
                        Ok(block) => bp.actions.push(block),
                        Err(e) => problems.push(e),
                    }
                }
            }
            Some(block @ Value::Object(_)) => match parse_block("actions", block) {
                Ok(block) => bp.actions.push(block),
                Err(e) => problems.push(e),
            },
            Some(other) => problems.push(BlueprintError::new(
                "actions",
                format!(
                    "must be an action block or a list of them, got {}",
                    kind(other)
                ),
            )),
        }
        problems.into_result()?;
        if bp.services.is_empty() && bp.actions.is_empty() {
            return Err(BlueprintError::new(
                "blueprint",
                "lists no services and no actions",
            ));
        }
        Ok(bp)
    }
}

fn parse_service(i: usize, item: &Value) -> Result<ServiceEntry, BlueprintError> {
    let block = format!("services[{i}]");
    let Value::Object(m) = item else {
        return Err(BlueprintError::new(
            block,
            format!(
                "must be one `template__name: data` entry, got {}",
                kind(item)
            ),
        ));
    };
    if m.len() != 1 {
        return Err(BlueprintError::new(
            block,
            format!(
                "must hold exactly one `template__name: data` entry, got {}",
                m.len()
            ),
        ));
    }
    let (key, data) = m.iter().next().expect("one entry");
    let block = format!("services[{i}] ({key})");
    let Some((template, name)) = key.split_once("__") else {
        return Err(BlueprintError::new(
            block,
            "the key must be `<template>__<name>`, e.g. `node__node1` (two underscores)",
        ));
    };
    if template.is_empty() || name.is_empty() {
        return Err(BlueprintError::new(
            block,
            "the key must be `<template>__<name>` with both parts given",
        ));
    }
    let data = match data {
        Value::Null => Value::Object(Map::new()),
        d @ Value::Object(_) => d.clone(),
        other => {
            return Err(BlueprintError::new(
                block,
                format!("the service data must be a mapping, got {}", kind(other)),
            ))
        }
    };
    Ok(ServiceEntry {
        block,
        template: template.to_owned(),
        name: name.to_owned(),
        data,
    })
}

fn parse_block(block: &str, v: &Value) -> Result<ActionBlock, BlueprintError> {
    let Value::Object(m) = v else {
        return Err(BlueprintError::new(
            block,
            format!("an action block must be a mapping, got {}", kind(v)),
        ));
    };
    for k in m.keys() {
        if !matches!(k.as_str(), "template" | "service" | "actions" | "args") {
            return Err(BlueprintError::new(
                block,
                format!(
                    "unknown key `{k}`; an action block has template, service, actions and args"
                ),
            ));
        }
    }
    let text = |k: &str| -> Result<Option<String>, BlueprintError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(BlueprintError::new(
                block,
                format!("`{k}` must be a non-empty string, got {}", kind(other)),
            )),
        }
    };
    let actions =
        match m.get("actions") {
            None | Some(Value::Null) => return Err(BlueprintError::new(
                block,
                "`actions` is missing: name the action(s) to schedule, e.g. `actions: [install]`",
            )),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for x in a {
                    match x {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            return Err(BlueprintError::new(
                                block,
                                format!("`actions` must list action names, got {}", kind(other)),
                            ))
                        }
                    }
                }
                if out.is_empty() {
                    return Err(BlueprintError::new(block, "`actions` is an empty list"));
                }
                out
            }
            Some(other) => {
                return Err(BlueprintError::new(
                    block,
                    format!(
                        "`actions` must be an action name or a list of them, got {}",
                        kind(other)
                    ),
                ))
            }
        };
    let args = match m.get("args") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(a @ Value::Object(_)) => a.clone(),
        Some(other) => {
            return Err(BlueprintError::new(
                block,
                format!("`args` must be a mapping, got {}", kind(other)),
            ))
        }
    };
    Ok(ActionBlock {
        block: block.to_owned(),
        template: text("template")?,
        service: text("service")?,
        actions,
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_design_example_parses() {
        let bp = Blueprint::from_yaml(
            r#"
services:
  - github.com/acme/templates/node/1.2.0__node1:
      hostname: 10.0.0.1
  - vm__vm1:
      node: node1
actions:
  - template: github.com/acme/templates/node/1.2.0
    service: node1
    actions: [install]
  - service: vm1
    actions: [install, start]
    args: {force: true}
"#,
        )
        .unwrap();
        assert_eq!(bp.services.len(), 2);
        assert_eq!(
            bp.services[0].template,
            "github.com/acme/templates/node/1.2.0"
        );
        assert_eq!(bp.services[0].name, "node1");
        assert_eq!(bp.services[0].data, json!({"hostname": "10.0.0.1"}));
        assert_eq!(bp.actions[1].actions, vec!["install", "start"]);
        assert_eq!(bp.actions[1].args, json!({"force": true}));
        let one = Blueprint::from_yaml("actions: {actions: install}\n").unwrap();
        assert_eq!(one.actions[0].actions, vec!["install"]);
        assert_eq!(one.actions[0].block, "actions");
    }

    #[test]
    fn bad_blueprints_name_the_block() {
        let err = |y: &str| Blueprint::from_yaml(y).unwrap_err().to_string();
        assert!(err("services:\n  - node1: {}\n").contains("services[0] (node1): the key must be"));
        assert!(err("actions:\n  - service: x\n").contains("actions[0]: `actions` is missing"));
        assert!(err("actions:\n  - {actions: [a], colour: red}\n").contains("unknown key `colour`"));
        assert!(err("servics: []\n").contains("unknown key `servics`"));
        assert!(err("services:\n  - a__b: 5\n").contains("must be a mapping"));
        assert!(err("services: {}\n").contains("must be a list"));
        assert!(err("{}\n").contains("no services and no actions"));
        assert!(err("actions: [{actions: []}]\n").contains("empty list"));
        assert!(err(": : :\n").contains("not valid YAML"));
    }
}
