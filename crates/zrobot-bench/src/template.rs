//! The benchmark's template repository: one `bench` template whose actions
//! are no-ops or round trips to producers, with a `validate` hook that checks
//! the data, as real templates do.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The template's name.
pub const NAME: &str = "bench";

const MANIFEST: &str = "\
version: 1.0.0
data:
  type: object
  properties:
    n: {type: integer, default: 0}
";

const CODE: &str = r#"
local b = {}
function b.validate(self)
  if type(self.data.n) ~= "number" then error("data.n must be a number") end
end
function b.noop(self) end
function b.ask(self, args)
  local p = robot.services:get({name = args.producer})
  for i = 1, args.n do
    p:schedule_action("noop", {}):wait()
  end
end
function b.connect(self, args)
  robot.robots[args.robot].services:find_or_create("bench", args.producer, {})
end
function b.ask_remote(self, args)
  local p = robot.robots[args.robot].services:get({name = args.producer})
  for i = 1, args.n do
    p:schedule_action("noop", {}):wait(60)
  end
end
return b
"#;

/// Writes the repository's files under `dir` (no git), for robots of this
/// process.
pub fn write(dir: &Path) -> anyhow::Result<()> {
    let t = dir.join("templates").join(NAME);
    std::fs::create_dir_all(&t).with_context(|| format!("cannot create {}", t.display()))?;
    std::fs::write(t.join("template.yaml"), MANIFEST).context("cannot write the manifest")?;
    std::fs::write(t.join(format!("{NAME}.lua")), CODE).context("cannot write the code")?;
    Ok(())
}

/// Makes `dir` a git repository of the template with one commit, for
/// `zrobot server start -T`, and returns what to pass to `-T`.
pub fn git_repo(dir: &Path) -> anyhow::Result<PathBuf> {
    write(dir)?;
    let author = zrobot_git::Author {
        name: "zrobot-bench",
        email: "bench@zrobot.invalid",
    };
    zrobot_git::commit_folder(dir, &author, "the benchmark's template", None)
        .with_context(|| format!("cannot make the template repository {}", dir.display()))?;
    Ok(dir.to_path_buf())
}
