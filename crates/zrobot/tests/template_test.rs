//! `zrobot template test`, run for real on the example repository, on
//! copies of it broken on purpose, and on test files written here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Runs `zrobot template test ARGS`; returns (exit code, stdout + stderr).
fn template_test(args: &[&str]) -> (i32, String) {
    let config_home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zrobot"))
        .args(["template", "test"])
        .args(args)
        .env("XDG_CONFIG_HOME", config_home.path())
        .env_remove("ZROBOT_URL")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A copy of the example repository to break.
fn copy_of_examples() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&examples(), tmp.path());
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// The 1-based line of the first line of `file` that contains `text`.
fn line_of(file: &Path, text: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("{} has no {text:?}", file.display()))
        + 1
}

/// The count in `N passed` (or `failed`, `filtered out`) of the summary.
fn count(out: &str, what: &str) -> usize {
    let summary = out
        .lines()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .strip_suffix(what)?
                .split_whitespace()
                .last()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no `{what}` in {summary}"))
}

#[test]
fn the_examples_pass_their_own_tests() {
    let (code, out) = template_test(&[examples().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("test result: ok."), "{out}");
    assert!(count(&out, "passed") >= 18, "{out}");
    assert_eq!(count(&out, "failed"), 0, "{out}");
    for label in [
        "test node/placing: a vm gets room and the first free address ... ok",
        "test vm/install: install on a node of another robot ... ok",
        "test capacity/report: the report counts the nodes of both robots ... ok",
    ] {
        assert!(out.contains(label), "{label}\n{out}");
    }
    // The robots of the tests log nothing a person did not ask for.
    assert!(!out.contains(" INFO "), "{out}");
}

/// A change of the code that breaks an expectation fails the test, names
/// the step by file and line, and says what differs; the other tests run.
#[test]
fn a_changed_behaviour_fails_the_test_that_pins_it() {
    let repo = copy_of_examples();
    edit(
        &repo.path().join("templates/node/lib/ipam.lua"),
        "for host = 2, 254",
        "for host = 3, 254",
    );
    let (code, out) = template_test(&[repo.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let file = repo.path().join("templates/node/tests/placing.yaml");
    let line = line_of(&file, "- service: node1");
    assert!(
        out.contains(&format!(
            "templates/node/tests/placing.yaml:{line}: step 1 (node1.create_vm): not as expected"
        )),
        "{out}"
    );
    assert!(
        out.contains(r#"result.ip: expected "10.0.0.2", got "10.0.0.3""#),
        "{out}"
    );
    assert!(
        out.contains(r#"data.vms.vm1.ip: expected "10.0.0.2", got "10.0.0.3""#),
        "{out}"
    );
    assert!(
        out.contains("test node/placing: a vm gets room and the first free address ... FAILED"),
        "{out}"
    );
    // Tests that do not depend on the address still pass.
    assert!(
        out.contains(
            "test node/placing: a vm that does not fit is refused, and changes nothing ... ok"
        ),
        "{out}"
    );
    assert!(count(&out, "failed") >= 3, "{out}");
}

/// An action that fails where the test expects success shows its error and
/// its traceback, with the template's file and line.
#[test]
fn an_unexpected_error_shows_the_traceback() {
    let repo = copy_of_examples();
    let code_file = repo.path().join("templates/node/node.lua");
    edit(
        &code_file,
        "  local placed = self.data.vms[args.name]\n  if placed then\n    return {ip = placed.ip}",
        "  local placed = self.data.vms[args.name]\n  if placed then\n    error(\"placed twice\")",
    );
    let line = line_of(&code_file, "placed twice");
    let (code, out) = template_test(&[repo.path().to_str().unwrap(), "--filter", "idempotent"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("step 2 (node1.create_vm): failed: lua.error:"),
        "{out}"
    );
    assert!(out.contains("placed twice"), "{out}");
    assert!(out.contains("traceback:"), "{out}");
    assert!(
        out.contains(&format!("templates/node/node.lua:{line}:")),
        "no line {line} in {out}"
    );
    assert_eq!(count(&out, "passed"), 0, "{out}");
    assert!(count(&out, "filtered out") >= 17, "{out}");
}

/// A task the step was not expected to cause is named, and so is one it
/// was expected to cause and did not.
#[test]
fn the_tasks_a_step_caused_are_checked_one_for_one() {
    let repo = copy_of_examples();
    let vm = repo.path().join("templates/vm/vm.lua");
    // install asks its node twice: once more than the test says.
    edit(
        &vm,
        "  local placed = node:schedule_action(",
        "  node:schedule_action(\"info\", {}):wait(10)\n  local placed = node:schedule_action(",
    );
    let (code, out) = template_test(&[
        repo.path().to_str().unwrap(),
        "--filter",
        "keeps the address",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(r#"scheduled: node1.info {} (ok) ran, and is not expected"#),
        "{out}"
    );
    assert!(out.contains("the tasks that ran: these"), "{out}");
}

/// Test files the runner cannot read fail, named by file, line and column,
/// and the others still run; a stub without an answer says where to add it.
#[test]
fn bad_test_files_and_missing_stub_answers_say_where_to_fix() {
    let repo = copy_of_examples();
    let tests = repo.path().join("templates/node/tests");
    std::fs::write(
        tests.join("typo.yaml"),
        "tests:\n  - name: typo\n    steps:\n      - {service: node1, actoin: info}\n",
    )
    .unwrap();
    std::fs::write(
        tests.join("unanswered.yaml"),
        r#"
tests:
  - name: the stub does not know info
    robots:
      edge:
        services: [{template: node, name: node1, actions: {create_vm: {result: {ip: 1.2.3.4}}}}]
    services:
      - {template: capacity, name: capacity, data: {robots: [edge]}}
    steps:
      - {service: capacity, action: report, expect: {result: {problems: {}}}}
  - name: no answer of the stub fits these arguments
    robots:
      edge:
        services: [{template: node, name: node1, actions: {create_vm: {when: {name: db}, result: {ip: 1.2.3.4}}}}]
    services:
      - {template: vm, name: web, data: {node: node1, robot: edge}}
    steps:
      - {service: web, action: install}
"#,
    )
    .unwrap();
    let (code, out) = template_test(&[repo.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("test templates/node/tests/typo.yaml ... FAILED"),
        "{out}"
    );
    assert!(
        out.contains("templates/node/tests/typo.yaml:4:") && out.contains("unknown field `actoin`"),
        "{out}"
    );
    // An action the stub does not declare is refused as a robot refuses it.
    assert!(
        out.contains("result.problems: expected an empty mapping")
            && out.contains("template stub/zrobot/edge/node/0.0.0 has no action `info`"),
        "{out}"
    );
    assert!(
        out.contains("the stub has no answer for node1.create_vm with arguments {\"cpu\":1,\"memory\":1024,\"name\":\"web\"}"),
        "{out}"
    );
    assert!(
        out.contains("test vm/install: install on a node of another robot ... ok"),
        "{out}"
    );
    assert_eq!(count(&out, "failed"), 3, "{out}");
}

/// Tests do not run on templates that do not load.
#[test]
fn templates_that_do_not_load_are_reported_first() {
    let repo = copy_of_examples();
    edit(
        &repo.path().join("templates/vm/template.yaml"),
        "version: 1.1.0",
        "version: one",
    );
    let (code, out) = template_test(&[repo.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("templates/vm/template.yaml"), "{out}");
    assert!(out.contains("could not be loaded"), "{out}");
    assert!(!out.contains("test result"), "{out}");
}
