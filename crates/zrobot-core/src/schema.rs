//! JSON Schema checks of service data and action arguments, with defaults applied.

use serde_json::{Map, Value};

/// The most problems one error lists.
pub const MAX_PROBLEMS: usize = 10;

/// A compiled JSON Schema, with the raw schema kept to apply its defaults.
pub struct Schema {
    raw: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("raw", &self.raw).finish()
    }
}

impl Schema {
    /// Compiles `raw`; the error says why it is not a valid JSON Schema.
    pub fn compile(raw: &Value) -> Result<Schema, String> {
        let validator = jsonschema::validator_for(raw).map_err(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                format!("not a valid JSON Schema: {e}")
            } else {
                format!("not a valid JSON Schema at `{at}`: {e}")
            }
        })?;
        check_defaults(raw, "")?;
        Ok(Schema {
            raw: raw.clone(),
            validator,
        })
    }

    /// The schema as written.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Fills in the defaults the schema declares for absent properties, then
    /// checks the result. `null` counts as an empty object when the schema
    /// describes an object.
    pub fn prepare(&self, mut value: Value) -> Result<Value, String> {
        if value.is_null() && schema_type_is(&self.raw, "object") {
            value = Value::Object(Map::new());
        }
        apply_defaults(&self.raw, &mut value);
        coerce(&self.raw, &mut value);
        self.check(&value)?;
        Ok(value)
    }

    /// Checks `value`; the error names every failing field and why (the
    /// first [`MAX_PROBLEMS`], then how many more).
    pub fn check(&self, value: &Value) -> Result<(), String> {
        let mut problems: Vec<String> = Vec::new();
        let mut more = 0usize;
        for e in self.validator.iter_errors(value) {
            if problems.len() == MAX_PROBLEMS {
                more += 1;
                continue;
            }
            let at = e.instance_path().to_string();
            let field = if at.is_empty() { "(root)" } else { at.as_str() };
            problems.push(format!("field `{field}`: {e}"));
        }
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            n => {
                let mut msg = format!("{} problems: {}", n + more, problems.join("; "));
                if more > 0 {
                    msg.push_str(&format!(" (and {more} more)"));
                }
                Err(msg)
            }
        }
    }

    /// Scripting languages cannot tell an empty list from an empty map: make
    /// every empty container match what the schema expects at its place.
    pub fn coerce_empty_containers(&self, value: &mut Value) {
        coerce(&self.raw, value)
    }
}

/// Refuses a property whose `default` its own schema refuses: the fault is
/// the template's, said when it loads, not the user's at `service create`.
/// A property schema that cannot stand alone (a `$ref` to the root) is not
/// checked.
fn check_defaults(schema: &Value, at: &str) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, prop) in props {
        let here = format!("{at}/{key}");
        if let Some(default) = prop.get("default") {
            if let Ok(v) = jsonschema::validator_for(prop) {
                if let Some(e) = v.iter_errors(default).next() {
                    return Err(format!(
                        "the default of `{here}` ({default}) does not match its own schema: {e}; fix the default or the schema"
                    ));
                }
            }
        }
        check_defaults(prop, &here)?;
    }
    Ok(())
}

fn schema_type_is(schema: &Value, ty: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == ty,
        Some(Value::Array(ts)) => ts.iter().any(|t| t == ty),
        _ => ty == "object" && schema.get("properties").is_some(),
    }
}

fn apply_defaults(schema: &Value, value: &mut Value) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let Value::Object(obj) = value else { return };
    for (key, prop) in props {
        match obj.get_mut(key) {
            Some(v) => apply_defaults(prop, v),
            None => {
                if let Some(default) = prop.get("default") {
                    let mut d = default.clone();
                    apply_defaults(prop, &mut d);
                    obj.insert(key.clone(), d);
                }
            }
        }
    }
}

fn coerce(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(obj)
            if obj.is_empty()
                && schema_type_is(schema, "array")
                && !schema_type_is(schema, "object") =>
        {
            *value = Value::Array(Vec::new());
        }
        Value::Array(arr)
            if arr.is_empty()
                && schema_type_is(schema, "object")
                && !schema_type_is(schema, "array") =>
        {
            *value = Value::Object(Map::new());
        }
        Value::Object(obj) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in obj.iter_mut() {
                if let Some(p) = props.and_then(|p| p.get(k)).or(additional) {
                    coerce(p, v);
                }
            }
        }
        Value::Array(arr) => {
            if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
                for v in arr.iter_mut() {
                    coerce(items, v);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_applied_and_checked() {
        let s = Schema::compile(&json!({
            "type": "object", "required": ["hostname"],
            "properties": {
                "hostname": {"type": "string"},
                "port": {"type": "integer", "default": 22},
                "vms": {"type": "array", "items": {"type": "string"}, "default": []}
            }
        }))
        .unwrap();
        let v = s.prepare(json!({"hostname": "h"})).unwrap();
        assert_eq!(v, json!({"hostname": "h", "port": 22, "vms": []}));
        let err = s
            .prepare(json!({"hostname": "h", "port": "x"}))
            .unwrap_err();
        assert!(err.contains("/port"), "{err}");
        let err = s.prepare(json!({})).unwrap_err();
        assert!(err.contains("hostname"), "{err}");
    }

    #[test]
    fn empty_containers_follow_the_schema() {
        let s = Schema::compile(&json!({
            "type": "object",
            "properties": {"vms": {"type": "array"}, "tags": {"type": "object"}}
        }))
        .unwrap();
        assert_eq!(s.prepare(json!({"vms": {}})).unwrap(), json!({"vms": []}));
        let mut v = json!({"vms": {}, "tags": []});
        s.coerce_empty_containers(&mut v);
        assert_eq!(v, json!({"vms": [], "tags": {}}));
    }

    /// The problem hidden behind the first is often the cause (an
    /// unexpected key): every one is named, up to a bound.
    #[test]
    fn every_problem_is_named() {
        let s = Schema::compile(&json!({
            "type": "object", "additionalProperties": false,
            "properties": {"port": {"type": "integer"}}
        }))
        .unwrap();
        let err = s.check(&json!({"port": "x", "prot": 1})).unwrap_err();
        assert!(err.starts_with("2 problems: "), "{err}");
        assert!(err.contains("/port") && err.contains("prot"), "{err}");
        // Past the bound, how many more.
        let props: serde_json::Map<String, Value> = (0..15)
            .map(|i| (format!("k{i}"), json!({"type": "integer"})))
            .collect();
        let s = Schema::compile(&json!({"type": "object", "properties": props})).unwrap();
        let bad: serde_json::Map<String, Value> =
            (0..15).map(|i| (format!("k{i}"), json!("x"))).collect();
        let err = s.check(&Value::Object(bad)).unwrap_err();
        assert!(err.starts_with("15 problems: "), "{err}");
        assert_eq!(err.matches("field `").count(), MAX_PROBLEMS, "{err}");
        assert!(err.ends_with("(and 5 more)"), "{err}");
    }

    #[test]
    fn a_default_its_schema_refuses_is_the_schemas_fault() {
        let err = Schema::compile(&json!({
            "type": "object",
            "properties": {"every": {"type": "integer", "default": "1h"}}
        }))
        .unwrap_err();
        assert!(
            err.contains("default of `/every`") && err.contains("\"1h\""),
            "{err}"
        );
        let nested = Schema::compile(&json!({
            "type": "object",
            "properties": {"a": {"type": "object", "properties": {"b": {"type": "string", "default": 3}}}}
        }))
        .unwrap_err();
        assert!(nested.contains("`/a/b`"), "{nested}");
    }

    #[test]
    fn a_bad_schema_is_refused() {
        let err = Schema::compile(&json!({"type": "nonsense"})).unwrap_err();
        assert!(err.contains("not a valid JSON Schema"), "{err}");
    }
}
