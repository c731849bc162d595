//! Property tests of the parsers a caller or a template author feeds: the
//! manifest, blueprints (YAML and JSON forms), YAML read back from what the
//! robot writes, and template UIDs. Whatever the input, they answer with a
//! value or an error naming the input, never a panic; what the robot writes
//! it reads back unchanged. Case counts are bounded so the suite takes seconds.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Map, Value};
use zrobot_core::blueprint::Blueprint;
use zrobot_core::template::Manifest;
use zrobot_core::{RepoId, TemplateUid};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 400,
        max_shrink_iters: 2_000,
        // Failures are reported with their minimal input; nothing is written
        // beside the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings that YAML is known to read as something else when left unquoted.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("no".to_owned()),
        Just("yes".to_owned()),
        Just("on".to_owned()),
        Just("~".to_owned()),
        Just("null".to_owned()),
        Just("Null".to_owned()),
        Just("true".to_owned()),
        Just("1.0".to_owned()),
        Just("0x1f".to_owned()),
        Just("1e3".to_owned()),
        Just(".inf".to_owned()),
        Just("-".to_owned()),
        Just("- a".to_owned()),
        Just("a: b".to_owned()),
        Just("#x".to_owned()),
        Just("'q'".to_owned()),
        Just("\"d\"".to_owned()),
        Just("".to_owned()),
        Just(" padded ".to_owned()),
        Just("line\nbreak".to_owned()),
        Just("tab\there".to_owned()),
        Just("&anchor".to_owned()),
        Just("*alias".to_owned()),
        Just("!tag".to_owned()),
        Just("{a: 1}".to_owned()),
        Just("[1, 2]".to_owned()),
        Just("%percent".to_owned()),
        Just("@at".to_owned()),
        Just("`tick".to_owned()),
        Just("é ünïcödé ✓".to_owned()),
        "[ -~]{0,12}",
        any::<String>(),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Finite floats only: JSON has no NaN or infinity.
        (-1e15f64..1e15f64).prop_map(Value::from),
        tricky_string().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(tricky_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Words a manifest or a blueprint is made of, so that generated documents
/// reach past the first check.
fn manifest_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("version".to_owned()),
        Just("description".to_owned()),
        Just("data".to_owned()),
        Just("actions".to_owned()),
        Just("on_delete".to_owned()),
        Just("timeout".to_owned()),
        Just("retry".to_owned()),
        Just("tries".to_owned()),
        Just("delay".to_owned()),
        Just("backoff".to_owned()),
        Just("recurring".to_owned()),
        Just("args".to_owned()),
        Just("type".to_owned()),
        Just("properties".to_owned()),
        Just("required".to_owned()),
        Just("default".to_owned()),
        Just("install".to_owned()),
        "[a-z_]{1,8}",
    ]
}

fn manifest_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::from("1.2.0")),
        Just(Value::from("object")),
        Just(Value::from("integer")),
        Just(Value::from(-1)),
        Just(Value::from(0)),
        Just(Value::from(1e300)),
        Just(Value::from(30)),
        Just(Value::from(2.5)),
        json_leaf(),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(manifest_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn manifest_document() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(manifest_key(), manifest_value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

fn blueprint_document() -> impl Strategy<Value = Value> {
    let service = (
        "(github\\.com/acme/templates/)?[a-z]{1,5}(/1\\.0\\.0)?(__[a-z0-9]{0,4})?",
        json_value(),
    )
        .prop_map(|(k, v)| {
            let mut m = Map::new();
            m.insert(k, v);
            Value::Object(m)
        });
    let block_key = prop_oneof![
        Just("template".to_owned()),
        Just("service".to_owned()),
        Just("actions".to_owned()),
        Just("args".to_owned()),
        "[a-z]{1,6}",
    ];
    let block = prop::collection::btree_map(block_key, json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
        .boxed();
    (
        prop::option::of(prop_oneof![
            prop::collection::vec(service, 0..4).prop_map(Value::Array),
            json_leaf(),
        ]),
        prop::option::of(prop_oneof![
            prop::collection::vec(block.clone(), 0..3).prop_map(Value::Array),
            block,
            json_leaf(),
        ]),
        prop::option::of(json_value()),
    )
        .prop_map(|(services, actions, extra)| {
            let mut m = Map::new();
            if let Some(s) = services {
                m.insert("services".to_owned(), s);
            }
            if let Some(a) = actions {
                m.insert("actions".to_owned(), a);
            }
            if let Some(e) = extra {
                m.insert("extra".to_owned(), e);
            }
            Value::Object(m)
        })
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,10}".prop_filter("a segment must name something", |s| {
        !s.trim_end_matches(".git").is_empty()
    })
}

/// Text shaped like a UID, with the segments that trip parsers: empty ones,
/// `.git` alone or twice, dots, versions with pre-release and build parts.
fn uid_like_text() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just(String::new()),
        Just(".git".to_owned()),
        Just("x.git".to_owned()),
        Just(".git.git".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("1.0.0".to_owned()),
        Just("1.0.0-rc.1+build".to_owned()),
        "[a-zA-Z0-9._-]{1,6}",
    ];
    let version = prop_oneof![
        Just("1.0.0".to_owned()),
        Just("0.1.0-rc.1".to_owned()),
        "[0-9.]{1,6}"
    ];
    prop_oneof![
        6 => (prop::collection::vec(seg.clone(), 4..=4), version)
            .prop_map(|(s, v)| format!("{}/{v}", s.join("/"))),
        3 => prop::collection::vec(seg, 1..7).prop_map(|s| s.join("/")),
        1 => "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(config())]

    /// What the robot writes as YAML (data repository, `robot.yaml.encode`)
    /// reads back as the same value, tricky strings included.
    #[test]
    fn yaml_written_by_the_robot_reads_back_the_same(v in json_value()) {
        let text = serde_saphyr::to_string(&v).expect("any JSON value encodes as YAML");
        let back: Value = zrobot_core::yaml::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n--- text:\n{text}")))?;
        prop_assert_eq!(&back, &v, "YAML text:\n{}", text);
    }

    /// Arbitrary text as a manifest: a manifest or an error naming the file.
    #[test]
    fn any_text_as_a_manifest_is_an_answer(text in any::<String>()) {
        let path = Path::new("templates/node/template.yaml");
        if let Err(e) = Manifest::parse(path, &text) {
            prop_assert_eq!(&e.path, path);
            prop_assert!(!e.message.is_empty());
        }
    }

    /// Documents made of manifest words (deep in its checks): never a panic,
    /// and an error always names the file.
    #[test]
    fn manifest_like_documents_are_an_answer(doc in manifest_document()) {
        let path = Path::new("templates/node/template.yaml");
        let text = serde_saphyr::to_string(&doc).expect("encodes");
        match Manifest::parse(path, &text) {
            Ok(m) => {
                // A manifest accepted has what the contract requires.
                prop_assert!(doc.get("version").is_some());
                for policy in m.actions.values() {
                    if let Some(t) = policy.timeout {
                        prop_assert!(t.as_secs_f64() > 0.0);
                    }
                    if let Some(r) = policy.retry {
                        prop_assert!(r.tries >= 1);
                    }
                }
            }
            Err(e) => {
                prop_assert_eq!(&e.path, path);
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    /// Arbitrary text as a blueprint: a blueprint or an error naming a block.
    #[test]
    fn any_text_as_a_blueprint_is_an_answer(text in any::<String>()) {
        if let Err(e) = Blueprint::from_yaml(&text) {
            prop_assert!(!e.block.is_empty() && !e.message.is_empty(), "{e:?}");
        }
    }

    /// Blueprint-shaped JSON (what `POST /blueprints` receives): its YAML and
    /// JSON forms give the same answer, and what is accepted is well formed.
    #[test]
    fn blueprint_like_documents_are_an_answer(doc in blueprint_document()) {
        let from_json = Blueprint::from_value(&doc);
        let text = serde_saphyr::to_string(&doc).expect("encodes");
        let from_yaml = Blueprint::from_yaml(&text);
        prop_assert_eq!(&from_json, &from_yaml, "YAML text:\n{}", text);
        match from_json {
            Ok(b) => {
                for s in &b.services {
                    prop_assert!(!s.template.is_empty() && !s.name.is_empty());
                    prop_assert!(s.data.is_object() || s.data.is_null(), "{:?}", s.data);
                }
                for a in &b.actions {
                    prop_assert!(!a.actions.is_empty());
                }
            }
            Err(e) => prop_assert!(!e.block.is_empty() && !e.message.is_empty()),
        }
    }

    /// Any text as a template UID: either a UID whose every segment names
    /// something and that prints back as itself, or nothing.
    #[test]
    fn any_text_as_a_uid_is_whole_or_refused(text in uid_like_text()) {
        if let Some(uid) = TemplateUid::parse(&text) {
            prop_assert!(!uid.repo.host.is_empty());
            prop_assert!(!uid.repo.account.is_empty());
            prop_assert!(!uid.repo.repo.is_empty(), "empty repository segment from {text:?}");
            prop_assert!(!uid.name.is_empty());
            let again = TemplateUid::parse(&uid.to_string());
            prop_assert_eq!(again.as_ref(), Some(&uid));
        }
    }

    /// A UID made of valid segments prints and parses back, and matches
    /// every suffix of itself.
    #[test]
    fn uids_round_trip_and_match_their_suffixes(
        host in segment(), account in segment(), repo in segment(), name in segment(),
        (maj, min, pat) in (0u64..100, 0u64..100, 0u64..100),
    ) {
        let uid = TemplateUid {
            repo: RepoId::new(&host, &account, &repo),
            name: name.clone(),
            version: semver::Version::new(maj, min, pat),
        };
        let text = uid.to_string();
        let back = TemplateUid::parse(&text);
        prop_assert_eq!(back.as_ref(), Some(&uid));
        let segments: Vec<&str> = text.split('/').collect();
        for start in 0..segments.len() {
            prop_assert!(uid.matches(&segments[start..]), "{} suffix {:?}", text, &segments[start..]);
        }
        // The name alone, without the version, names it too.
        prop_assert!(uid.matches(&segments[3..4]));
    }
}
