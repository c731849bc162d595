//! Templates: a manifest plus code, loaded from `templates/<name>/` folders of a
//! repository, and the registry that resolves references to them.

mod manifest;
mod registry;
mod uid;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

pub use manifest::{ActionPolicy, Manifest, RetryPolicy};
pub use registry::TemplateRegistry;
pub use uid::{RepoId, TemplateUid};

use crate::engine::{Engine, Hook, TemplateCode, TemplateSource};
use crate::error::{CoreError, TemplateError};

/// One loaded template version.
pub struct Template {
    pub uid: TemplateUid,
    /// `uid` as text, made once: every task records it.
    pub uid_text: String,
    pub manifest: Manifest,
    /// The template's folder (its files are the template's to read).
    pub dir: PathBuf,
    pub repo_root: PathBuf,
    pub code: Arc<dyn TemplateCode>,
    /// A digest of the files of its folder when it was loaded: two loads of
    /// one version with different files (a fix committed without a new
    /// version) differ. Not kept across restarts.
    pub digest: u64,
    /// The commit its repository was checked out at, when it came from git.
    pub commit: Option<String>,
    /// The paths of its data's secret properties, sealed at rest
    /// ([`crate::sealed`]).
    pub secret_paths: Vec<Vec<String>>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").field("uid", &self.uid).finish()
    }
}

const NO_POLICY: ActionPolicy = ActionPolicy {
    timeout: None,
    retry: None,
    recurring: None,
    args: None,
};

impl Template {
    pub fn name(&self) -> &str {
        &self.uid.name
    }

    /// The template's actions, sorted.
    pub fn actions(&self) -> &[String] {
        self.code.actions()
    }

    pub fn has_action(&self, name: &str) -> bool {
        self.code.actions().iter().any(|a| a == name)
    }

    pub fn has_hook(&self, hook: Hook) -> bool {
        self.code.has_hook(hook)
    }

    /// The manifest's policy for `action` (an empty one when it says nothing).
    pub fn policy(&self, action: &str) -> &ActionPolicy {
        self.manifest.actions.get(action).unwrap_or(&NO_POLICY)
    }

    /// Checks `data` against the schema, with its defaults applied.
    pub fn prepare_data(&self, data: Value) -> Result<Value, CoreError> {
        match &self.manifest.data {
            None => match data {
                Value::Null => Ok(Value::Object(Default::default())),
                v @ Value::Object(_) => Ok(v),
                other => Err(CoreError::InvalidData {
                    template: self.uid.to_string(),
                    reason: format!("data must be an object, got {}", kind_of(&other)),
                }),
            },
            Some(schema) => schema
                .prepare(data)
                .map_err(|reason| CoreError::InvalidData {
                    template: self.uid.to_string(),
                    reason,
                }),
        }
    }

    /// Checks data handed back by an action (empty containers repaired first).
    pub fn check_data(&self, data: &mut Value) -> Result<(), String> {
        match &self.manifest.data {
            None => {
                if data.as_array().is_some_and(Vec::is_empty) {
                    *data = Value::Object(Default::default());
                }
                if data.is_object() {
                    Ok(())
                } else {
                    Err(format!("data must be an object, got {}", kind_of(data)))
                }
            }
            Some(schema) => {
                schema.coerce_empty_containers(data);
                schema.check(data)
            }
        }
    }

    /// Checks that `action` exists and its arguments match its schema, with defaults applied.
    pub fn prepare_args(&self, action: &str, args: Value) -> Result<Value, CoreError> {
        if !self.has_action(action) {
            return Err(CoreError::UnknownAction {
                template: self.uid.to_string(),
                action: action.to_owned(),
                available: self.actions().to_vec(),
            });
        }
        match &self.policy(action).args {
            None => match args {
                Value::Null | Value::Object(_) => Ok(args),
                other => Err(CoreError::InvalidArgs {
                    action: action.to_owned(),
                    reason: format!("arguments must be an object, got {}", kind_of(&other)),
                }),
            },
            Some(schema) => schema
                .prepare(args)
                .map_err(|reason| CoreError::InvalidArgs {
                    action: action.to_owned(),
                    reason,
                }),
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// What loading a repository gave: the good templates, and an error for each bad one.
#[derive(Debug, Default)]
pub struct RepoLoad {
    pub templates: Vec<Arc<Template>>,
    pub errors: Vec<TemplateError>,
    /// `(service, UID)`: services that now run new code of the version they
    /// were on (its files changed, its version did not).
    pub reloaded: Vec<(String, String)>,
}

fn valid_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Loads every template under `repo_root/templates/`. One broken template
/// does not keep the others from loading.
pub fn load_repository(
    repo_root: &Path,
    repo: &RepoId,
    engine: &dyn Engine,
    commit: Option<&str>,
) -> RepoLoad {
    let mut out = RepoLoad::default();
    let templates_dir = repo_root.join("templates");
    let entries = match std::fs::read_dir(&templates_dir) {
        Ok(e) => e,
        Err(e) => {
            out.errors.push(TemplateError::new(
                &templates_dir,
                None,
                format!("cannot read the templates folder ({e}); a template repository keeps each template in templates/<name>/"),
            ));
            return out;
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        match load_template(&dir, repo_root, repo, engine) {
            Ok(mut t) => {
                t.commit = commit.map(str::to_owned);
                out.templates.push(Arc::new(t))
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// Loads the template in `dir` (a folder of `repo_root/templates/`).
pub fn load_template(
    dir: &Path,
    repo_root: &Path,
    repo: &RepoId,
    engine: &dyn Engine,
) -> Result<Template, TemplateError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !valid_template_name(&name) {
        return Err(TemplateError::new(
            dir,
            None,
            "a template folder name may hold only lower-case letters, digits, `_` and `-`; rename the folder",
        ));
    }
    let manifest_path = dir.join("template.yaml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        TemplateError::new(
            &manifest_path,
            None,
            format!("cannot read the manifest ({e}); every template needs a template.yaml"),
        )
    })?;
    let manifest = Manifest::parse(&manifest_path, &text)?;
    let uid = TemplateUid {
        repo: repo.clone(),
        name: name.clone(),
        version: manifest.version.clone(),
    };
    let code_path = dir.join(engine.code_file(&name));
    if !code_path.is_file() {
        return Err(TemplateError::new(
            &code_path,
            None,
            format!(
                "the template's code is missing; create {}",
                code_path.display()
            ),
        ));
    }
    let code = engine.compile(&TemplateSource {
        uid: uid.clone(),
        dir: dir.to_path_buf(),
        repo_root: repo_root.to_path_buf(),
        code_path,
    })?;
    manifest.check_actions(&manifest_path, code.actions())?;
    let secret_paths = manifest_secret_paths(&manifest);
    Ok(Template {
        uid_text: uid.to_string(),
        uid,
        manifest,
        dir: dir.to_path_buf(),
        repo_root: repo_root.to_path_buf(),
        code,
        digest: folder_digest(dir),
        secret_paths,
        commit: None,
    })
}

fn manifest_secret_paths(manifest: &Manifest) -> Vec<Vec<String>> {
    manifest
        .data
        .as_ref()
        .map(|s| crate::sealed::secret_paths(s.raw()))
        .unwrap_or_default()
}

/// A digest of every file under `dir` (names and contents, in name order),
/// to tell whether a template's files changed between two loads. Its
/// `tests/` folder is left out: a test changes no code the robot runs.
fn folder_digest(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    fn walk(dir: &Path, base: &Path, depth: usize, h: &mut std::hash::DefaultHasher) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if depth == 0 && meta.is_dir() && p.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            p.strip_prefix(base).unwrap_or(&p).hash(h);
            if meta.is_dir() && depth < 8 {
                walk(&p, base, depth + 1, h);
            } else if meta.is_file() {
                std::fs::read(&p).unwrap_or_default().hash(h);
            }
        }
    }
    let mut h = std::hash::DefaultHasher::new();
    walk(dir, dir, 0, &mut h);
    h.finish()
}
