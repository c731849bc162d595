//! YAML reading for every part of the robot, YAML 1.2 style: `yes`, `no`,
//! `y`, `n`, `on` and `off` stay strings (the "Norway problem").

use serde::de::DeserializeOwned;

/// Parses YAML text into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options(text, options)
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
}
