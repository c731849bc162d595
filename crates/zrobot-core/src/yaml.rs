//! YAML reading for every part of the robot, YAML 1.2 style: `yes`, `no`,
//! `y`, `n`, `on` and `off` stay strings (the "Norway problem").

use serde::de::DeserializeOwned;

/// Parses YAML text into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options(text, options)
}

/// How a YAML error of the file `name` (whose text is `text`) reads: its
/// line, column and snippet under the file's name, the key whose value is
/// wrong when the parser names none, and no advice meant for programmers.
pub fn describe_error(e: &serde_saphyr::Error, name: &str, text: &str) -> String {
    let mut options = serde_saphyr::RenderOptions::default();
    options.source_name = Some(name);
    let mut out = e.render_with_options(options).replace(
        ", set DuplicateKeyPolicy in Options if acceptable",
        " (a key may appear only once in a mapping: remove or rename the second)",
    );
    if out.contains("did not find expected") {
        if let Some(at) = e.location() {
            out.push_str(&format!(
                "\nline {} is not indented like the lines around it: YAML nests by indentation (spaces, not tabs)",
                at.line()
            ));
        }
    }
    let wrong_number = [
        "invalid floating point",
        "invalid integer",
        "invalid number",
    ]
    .iter()
    .any(|m| out.contains(m));
    if wrong_number {
        let key = e.location().and_then(|at| {
            let line = text
                .lines()
                .nth(usize::try_from(at.line()).ok()?.checked_sub(1)?)?;
            let (key, _) = line.split_once(':')?;
            let key = key.trim().trim_start_matches("- ");
            (!key.is_empty()).then(|| key.to_owned())
        });
        if let Some(key) = key {
            out.push_str(&format!(
                "\n`{key}` takes a number: write it without a unit (seconds are a plain number, e.g. `5` or `0.5`)"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn norway_stays_a_string() {
        let v: serde_json::Value = super::from_str("country: no\nflag: y\nreal: true\n").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"country": "no", "flag": "y", "real": true})
        );
    }

    fn error_of<T: serde::de::DeserializeOwned>(text: &str) -> String {
        let e = super::from_str::<T>(text).map(|_| ()).unwrap_err();
        super::describe_error(&e, "templates/t/template.yaml", text)
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Policy {
        recurring: Option<f64>,
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dup = error_of::<serde_json::Value>("version: 1.0.0\nversion: 1.0.1\n");
        assert!(dup.contains("templates/t/template.yaml:2"), "{dup}");
        assert!(
            !dup.contains("DuplicateKeyPolicy") && dup.contains("only once"),
            "{dup}"
        );
        let unit = error_of::<std::collections::BTreeMap<String, Policy>>("go:\n  recurring: 5s\n");
        assert!(unit.contains("`recurring` takes a number"), "{unit}");
        assert!(!unit.contains("<input>"), "{unit}");
    }
}
