//! Loading templates: good ones, every kind of bad one, and resolving references.

mod common;

use common::*;
use zrobot_core::CoreError;

const NODE_YAML: &str = "version: 1.2.0\ndata:\n  type: object\n  properties:\n    hostname: {type: string, default: h}\n";
const NODE_LUA: &str = "local n = {}\nfunction n.install(self) end\nfunction n._helper() end\nfunction n.init(self) end\nn.not_an_action = 42\nreturn n\n";

fn load_errors(files: &[(&str, &str)]) -> Vec<String> {
    let repo = Repo::new();
    for (p, t) in files {
        repo.file(p, t);
    }
    let robot = tokio::runtime::Runtime::new().unwrap();
    let _g = robot.enter();
    let r = common::robot();
    let load = r.load_repository(&repo.root(), &repo.id("acme", "t"));
    load.errors.iter().map(|e| e.to_string()).collect()
}

fn one_error(files: &[(&str, &str)]) -> String {
    let errors = load_errors(files);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0].clone()
}

#[tokio::test]
async fn actions_are_public_functions_that_are_not_hooks() {
    let robot = robot();
    let repo = Repo::new();
    repo.template("node", NODE_YAML, NODE_LUA);
    let load = load(&robot, &repo);
    assert_eq!(load.templates.len(), 1);
    let t = &load.templates[0];
    assert_eq!(t.uid.to_string(), "github.com/acme/templates/node/1.2.0");
    assert_eq!(t.actions(), ["install".to_string()]);
}

#[test]
fn a_missing_version_names_the_field() {
    let e = one_error(&[
        ("templates/a/template.yaml", "description: x\n"),
        ("templates/a/a.lua", "return {}"),
    ]);
    assert!(
        e.contains("template.yaml") && e.contains("`version`"),
        "{e}"
    );
}

#[test]
fn a_version_that_is_not_semver_is_refused() {
    let e = one_error(&[
        ("templates/a/template.yaml", "version: 1.2\n"),
        ("templates/a/a.lua", "return {}"),
    ]);
    assert!(e.contains("semantic version"), "{e}");
}

#[test]
fn an_unknown_key_is_refused() {
    let e = one_error(&[
        ("templates/a/template.yaml", "version: 1.0.0\nactionz: {}\n"),
        ("templates/a/a.lua", "return {}"),
    ]);
    assert!(
        e.contains("actionz")
            && e.contains("expected one of version, description, data, actions, on_delete"),
        "{e}"
    );
}

#[test]
fn an_invalid_schema_is_refused() {
    let e = one_error(&[
        (
            "templates/a/template.yaml",
            "version: 1.0.0\ndata: {type: object, properties: {x: {type: 5}}}\n",
        ),
        ("templates/a/a.lua", "return {}"),
    ]);
    assert!(e.contains("`data`") && e.contains("JSON Schema"), "{e}");
}

#[test]
fn a_missing_code_file_is_named() {
    let e = one_error(&[("templates/a/template.yaml", "version: 1.0.0\n")]);
    assert!(e.contains("a.lua") && e.contains("missing"), "{e}");
}

#[test]
fn a_missing_manifest_is_named() {
    let e = one_error(&[("templates/a/a.lua", "return {}")]);
    assert!(e.contains("template.yaml"), "{e}");
}

#[test]
fn a_lua_syntax_error_gives_file_and_line() {
    let e = one_error(&[
        ("templates/a/template.yaml", "version: 1.0.0\n"),
        (
            "templates/a/a.lua",
            "local a = {}\n\nfunction a.x(self)\n  if then\nend\nreturn a\n",
        ),
    ]);
    assert!(
        e.contains("syntax error") && e.contains("templates/a/a.lua:4"),
        "{e}"
    );
}

#[test]
fn code_that_returns_no_table_is_refused() {
    let e = one_error(&[
        ("templates/a/template.yaml", "version: 1.0.0\n"),
        ("templates/a/a.lua", "local a = {}\n"),
    ]);
    assert!(e.contains("return"), "{e}");
}

#[test]
fn on_delete_and_recurring_must_name_actions() {
    let e = one_error(&[
        (
            "templates/a/template.yaml",
            "version: 1.0.0\non_delete: [cleanup]\n",
        ),
        (
            "templates/a/a.lua",
            "return { install = function(self) end }",
        ),
    ]);
    assert!(
        e.contains("on_delete[0]") && e.contains("cleanup") && e.contains("install"),
        "{e}"
    );
    let e = one_error(&[
        (
            "templates/a/template.yaml",
            "version: 1.0.0\nactions: {monitor: {recurring: 5}}\n",
        ),
        (
            "templates/a/a.lua",
            "return { install = function(self) end }",
        ),
    ]);
    assert!(e.contains("actions.monitor.recurring"), "{e}");
}

#[test]
fn a_bad_template_does_not_keep_the_good_ones_from_loading() {
    let repo = Repo::new();
    repo.template("good", "version: 1.0.0\n", "return { a = function() end }");
    repo.template("bad", "version: nope\n", "return {}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let r = robot();
    let load = r.load_repository(&repo.root(), &repo.id("acme", "t"));
    assert_eq!(load.templates.len(), 1);
    assert_eq!(load.errors.len(), 1);
    assert!(r.templates().resolve("good").is_ok());
}

#[test]
fn a_repository_without_templates_says_how_to_lay_it_out() {
    let e = one_error(&[("README.md", "hi")]);
    assert!(e.contains("templates/<name>/"), "{e}");
}

#[tokio::test]
async fn references_resolve_by_suffix_and_highest_semver() {
    let robot = robot();
    let v1 = Repo::new();
    v1.template("node", "version: 1.9.0\n", "return { a = function() end }");
    let v2 = Repo::new();
    v2.template("node", "version: 1.10.0\n", "return { a = function() end }");
    robot.load_repository(&v1.root(), &v1.id("acme", "templates"));
    robot.load_repository(&v2.root(), &v2.id("acme", "templates"));
    assert_eq!(robot.templates().list().len(), 2);
    // 1.10.0 > 1.9.0 as semver (as strings it would lose).
    for r in [
        "node",
        "templates/node",
        "acme/templates/node",
        "github.com/acme/templates/node",
    ] {
        assert_eq!(
            robot
                .templates()
                .resolve(r)
                .unwrap()
                .uid
                .version
                .to_string(),
            "1.10.0",
            "{r}"
        );
    }
    assert_eq!(
        robot
            .templates()
            .resolve("node/1.9.0")
            .unwrap()
            .uid
            .version
            .to_string(),
        "1.9.0"
    );
    assert!(matches!(
        robot.templates().resolve("node/2.0.0"),
        Err(CoreError::TemplateNotFound(_))
    ));
    assert!(matches!(
        robot.templates().resolve("vm"),
        Err(CoreError::TemplateNotFound(_))
    ));
}

#[tokio::test]
async fn the_same_name_in_two_repositories_is_ambiguous() {
    let robot = robot();
    let a = Repo::new();
    a.template("node", "version: 1.0.0\n", "return { a = function() end }");
    let b = Repo::new();
    b.template("node", "version: 1.0.0\n", "return { a = function() end }");
    robot.load_repository(&a.root(), &a.id("acme", "templates"));
    robot.load_repository(&b.root(), &b.id("other", "templates"));
    match robot.templates().resolve("node") {
        Err(CoreError::AmbiguousTemplate { candidates, .. }) => {
            assert_eq!(
                candidates,
                vec![
                    "github.com/acme/templates/node/1.0.0",
                    "github.com/other/templates/node/1.0.0"
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    let msg = robot.templates().resolve("node").unwrap_err().to_string();
    assert!(
        msg.contains("github.com/other/templates/node/1.0.0"),
        "{msg}"
    );
    assert!(robot.templates().resolve("other/templates/node").is_ok());
}
