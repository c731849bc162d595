//! How an expected value matches an actual one in a template test: a
//! mapping names the keys it checks (an empty one expects an empty one), a
//! list is checked item by item, any other value must be equal; every
//! difference is named by its path.

use serde_json::Value;

/// The differences between `expected` and `actual`, each as `path: what`,
/// at most `limit` of them. `actual` is `None` where the key is missing.
pub fn differences(
    expected: &Value,
    actual: Option<&Value>,
    path: &str,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    walk(expected, actual, path, &mut out, limit);
    out
}

fn walk(expected: &Value, actual: Option<&Value>, path: &str, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit {
        return;
    }
    match (expected, actual) {
        // `null` expects the key missing or null.
        (Value::Null, None | Some(Value::Null)) => {}
        (_, None) => out.push(format!(
            "{path}: expected {}, but it is missing",
            show(expected)
        )),
        (Value::Object(want), Some(Value::Object(have))) if want.is_empty() && !have.is_empty() => {
            out.push(format!(
                "{path}: expected an empty mapping, got {}",
                show(actual.expect("matched"))
            ));
        }
        (Value::Object(want), Some(Value::Object(have))) => {
            for (key, value) in want {
                walk(value, have.get(key), &join(path, key), out, limit);
            }
        }
        (Value::Array(want), Some(Value::Array(have))) => {
            if want.len() != have.len() {
                out.push(format!(
                    "{path}: expected a list of {}, got {} item(s): {}",
                    want.len(),
                    have.len(),
                    show(actual.expect("matched"))
                ));
                return;
            }
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                walk(w, Some(h), &format!("{path}[{i}]"), out, limit);
            }
        }
        (Value::Number(w), Some(Value::Number(h))) if w.as_f64() == h.as_f64() => {}
        (want, Some(have)) if want == have => {}
        (want, Some(have)) => out.push(format!(
            "{path}: expected {}, got {}",
            show(want),
            show(have)
        )),
    }
}

/// Whether `actual` matches `expected`.
pub fn matches(expected: &Value, actual: &Value) -> bool {
    differences(expected, Some(actual), "", 1).is_empty()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A value as a line of JSON, cut if long.
pub fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        let cut: String = text.chars().take(200).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn mappings_check_only_the_keys_they_name() {
        let actual = json!({"ip": "10.0.0.2", "memory": 1024});
        assert!(matches(&json!({"ip": "10.0.0.2"}), &actual));
        assert_eq!(
            differences(
                &json!({"ip": "10.0.0.3", "cpu": 1}),
                Some(&actual),
                "result",
                10
            ),
            vec![
                "result.cpu: expected 1, but it is missing".to_owned(),
                "result.ip: expected \"10.0.0.3\", got \"10.0.0.2\"".to_owned(),
            ]
        );
    }

    #[test]
    fn lists_match_item_by_item_and_numbers_by_value() {
        assert!(matches(
            &json!([1, {"a": 2}]),
            &json!([1.0, {"a": 2, "b": 3}])
        ));
        assert_eq!(
            differences(&json!([1]), Some(&json!([1, 2])), "r", 10),
            vec!["r: expected a list of 1, got 2 item(s): [1,2]".to_owned()]
        );
        assert_eq!(
            differences(&json!([1, 3]), Some(&json!([1, 2])), "r", 10),
            vec!["r[1]: expected 3, got 2".to_owned()]
        );
    }

    #[test]
    fn an_empty_mapping_expects_an_empty_one() {
        assert!(matches(&json!({"vms": {}}), &json!({"vms": {}, "n": 1})));
        assert_eq!(
            differences(
                &json!({"vms": {}}),
                Some(&json!({"vms": {"a": 1}})),
                "data",
                10
            ),
            vec!["data.vms: expected an empty mapping, got {\"a\":1}".to_owned()]
        );
    }

    #[test]
    fn null_expects_the_key_missing() {
        assert!(matches(&json!({"gone": null}), &json!({"kept": 1})));
        assert!(!matches(&json!({"kept": null}), &json!({"kept": 1})));
    }
}
