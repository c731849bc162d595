//! Secret data fields, sealed at rest: a property of a template's data
//! schema marked `x-secret: true` (or `format: password`) is kept in memory
//! as written, and stored (database, data repository) only sealed with the
//! robot's data key (ChaCha20-Poly1305), as `{"$sealed": "<base64>"}`. A
//! value sealed with another key cannot be opened: the field comes back
//! absent, and the restore says which services lost what.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};

/// The key under which a sealed value is stored.
const SEALED: &str = "$sealed";

/// The robot's data key.
pub struct DataKey {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// The length of a key, in bytes.
    pub const LEN: usize = 32;

    pub fn from_bytes(bytes: &[u8; Self::LEN]) -> DataKey {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte key");
        DataKey {
            key: LessSafeKey::new(unbound),
            random: SystemRandom::new(),
        }
    }

    /// A new random key's bytes.
    pub fn generate() -> [u8; Self::LEN] {
        let mut bytes = [0u8; Self::LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source works");
        bytes
    }

    /// Reads a key written as 64 hexadecimal digits (surrounding whitespace
    /// aside), or as 32 raw bytes.
    pub fn parse(file: &[u8]) -> Result<DataKey, String> {
        if let Ok(raw) = <[u8; Self::LEN]>::try_from(file) {
            return Ok(DataKey::from_bytes(&raw));
        }
        let text = std::str::from_utf8(file)
            .map_err(|_| "it is neither 64 hexadecimal digits nor 32 bytes".to_owned())?
            .trim();
        if text.len() != 2 * Self::LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "it holds {} characters; a data key is 64 hexadecimal digits (or 32 raw bytes)",
                text.len()
            ));
        }
        let mut bytes = [0u8; Self::LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex digits");
        }
        Ok(DataKey::from_bytes(&bytes))
    }

    /// The key as 64 hexadecimal digits.
    pub fn hex(bytes: &[u8; Self::LEN]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn seal_value(&self, value: &Value) -> Value {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut buf = serde_json::to_vec(value).expect("JSON values encode");
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .expect("a value fits ChaCha20-Poly1305");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        let mut sealed = Map::new();
        sealed.insert(SEALED.into(), Value::String(BASE64.encode(out)));
        Value::Object(sealed)
    }

    fn open_value(&self, sealed: &str) -> Option<Value> {
        let raw = BASE64.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut buf).ok()?;
        serde_json::from_slice(plain).ok()
    }

    /// `data` with the value at each of `paths` sealed; the same value when
    /// none is present.
    pub fn seal(&self, paths: &[Vec<String>], data: &Value) -> Value {
        let mut out = data.clone();
        for path in paths {
            if let Some(slot) = pointer_mut(&mut out, path) {
                if !slot.is_null() && !is_sealed(slot) {
                    *slot = self.seal_value(slot);
                }
            }
        }
        out
    }

    /// `data` with every sealed value at `paths` opened; a value this key
    /// cannot open is removed, and its path (`a.b`) returned.
    pub fn open(&self, paths: &[Vec<String>], mut data: Value) -> (Value, Vec<String>) {
        let mut lost = Vec::new();
        for path in paths {
            let Some((last, parent)) = path.split_last() else {
                continue;
            };
            let Some(Value::Object(parent)) = pointer_mut(&mut data, parent) else {
                continue;
            };
            let Some(slot) = parent.get(last) else {
                continue;
            };
            let Some(sealed) = slot.get(SEALED).and_then(Value::as_str) else {
                continue;
            };
            match self.open_value(sealed) {
                Some(v) => {
                    parent.insert(last.clone(), v);
                }
                None => {
                    parent.remove(last);
                    lost.push(path.join("."));
                }
            }
        }
        (data, lost)
    }
}

fn is_sealed(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key(SEALED))
}

fn pointer_mut<'a>(data: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut at = data;
    for key in path {
        at = at.as_object_mut()?.get_mut(key)?;
    }
    Some(at)
}

/// The paths of the secret properties of a data schema: `x-secret: true`
/// or `format: password`, under `properties`, at any depth of nested
/// objects.
pub fn secret_paths(schema: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    walk(schema, &mut Vec::new(), &mut out);
    out
}

fn walk(schema: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(Value::Object(props)) = schema.get("properties") else {
        return;
    };
    for (name, prop) in props {
        at.push(name.clone());
        let secret = prop.get("x-secret") == Some(&Value::Bool(true))
            || prop.get("format").and_then(Value::as_str) == Some("password");
        if secret {
            out.push(at.clone());
        } else {
            walk(prop, at, out);
        }
        at.pop();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "password": {"type": "string", "format": "password"},
            "cloud": {"type": "object", "properties": {
                "token": {"type": "string", "x-secret": true},
                "region": {"type": "string"},
            }},
        }})
    }

    #[test]
    fn secret_properties_are_found_at_any_depth() {
        assert_eq!(
            secret_paths(&schema()),
            vec![
                vec!["cloud".to_owned(), "token".to_owned()],
                vec!["password".to_owned()],
            ]
        );
    }

    #[test]
    fn sealed_values_open_with_their_key_only() {
        let paths = secret_paths(&schema());
        let data = json!({"name": "n", "password": "hunter2", "cloud": {"token": {"a": [1]}, "region": "eu"}});
        let key = DataKey::from_bytes(&DataKey::generate());
        let sealed = key.seal(&paths, &data);
        let text = sealed.to_string();
        assert!(!text.contains("hunter2") && !text.contains("[1]"), "{text}");
        assert_eq!(sealed["name"], "n");
        assert_eq!(sealed["cloud"]["region"], "eu");
        // Sealing twice gives other bytes (a fresh nonce), and sealing what
        // is sealed changes nothing.
        assert_ne!(key.seal(&paths, &data), sealed);
        assert_eq!(key.seal(&paths, &sealed), sealed);
        assert_eq!(key.open(&paths, sealed.clone()), (data.clone(), vec![]));

        let other = DataKey::from_bytes(&DataKey::generate());
        let (opened, lost) = other.open(&paths, sealed);
        assert_eq!(lost, ["cloud.token", "password"]);
        assert_eq!(opened, json!({"name": "n", "cloud": {"region": "eu"}}));
    }

    #[test]
    fn keys_are_read_as_hex_or_raw_bytes() {
        let bytes = DataKey::generate();
        let paths = vec![vec!["p".to_owned()]];
        let data = json!({"p": "x"});
        let from_hex = DataKey::parse(format!("{}\n", DataKey::hex(&bytes)).as_bytes()).unwrap();
        let from_raw = DataKey::parse(&bytes).unwrap();
        assert_eq!(from_raw.open(&paths, from_hex.seal(&paths, &data)).0, data);
        assert!(DataKey::parse(b"short")
            .unwrap_err()
            .contains("64 hexadecimal digits"));
    }
}
