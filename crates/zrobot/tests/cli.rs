//! The `zrobot` binary, run for real.

use std::process::Command;

fn zrobot(args: &[&str]) -> (i32, String) {
    // No test reads or writes the user's own CLI config.
    let config_home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zrobot"))
        .args(args)
        .env("XDG_CONFIG_HOME", config_home.path())
        .env_remove("ZROBOT_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn template_check_reports_each_template() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("templates");
    std::fs::create_dir_all(t.join("good")).unwrap();
    std::fs::write(t.join("good/template.yaml"), "version: 1.0.0\n").unwrap();
    std::fs::write(
        t.join("good/good.lua"),
        "return { install = function(self) end }",
    )
    .unwrap();
    let (code, out) = zrobot(&["template", "check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/good/1.0.0  actions: install"), "{out}");
    assert!(out.contains("1 template(s) loaded"), "{out}");

    std::fs::create_dir_all(t.join("bad")).unwrap();
    std::fs::write(t.join("bad/template.yaml"), "version: 1\n").unwrap();
    std::fs::write(t.join("bad/bad.lua"), "return {}").unwrap();
    let (code, out) = zrobot(&["template", "check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad/template.yaml: field `version`"), "{out}");
}

#[test]
fn help_names_the_commands() {
    let (code, out) = zrobot(&["--help"]);
    assert_eq!(code, 0);
    for command in [
        "server",
        "robot",
        "template",
        "service",
        "task",
        "blueprint",
        "webhook",
        "godtoken",
        "completions",
        "demo",
    ] {
        assert!(out.contains(command), "{command}: {out}");
    }
}
