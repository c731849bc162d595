//! Where the robot and the CLI keep their files: the data directory (XDG data
//! dir), the god token inside it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// `$XDG_DATA_HOME/zrobot`, else `~/.local/share/zrobot`.
pub fn default_data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share").join("zrobot")
}

/// `$XDG_CONFIG_HOME/zrobot`, else `~/.config/zrobot`: the CLI's connection config.
#[allow(dead_code)]
pub fn default_config_dir() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("zrobot")
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(fallback),
    }
}

/// Creates `dir` (and its parents) readable by its owner only.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))
}

const GOD_TOKEN_FILE: &str = "god.token";

/// The god token of the robot using `data_dir`, made (mode 0600) if missing.
pub fn god_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(GOD_TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write the god token to {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    Ok(token)
}

/// Reads the god token without making one.
pub fn read_god_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(GOD_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        _ => bail!(
            "no god token in {}: start the robot with `zrobot server start --god --data-dir {}` first",
            data_dir.display(),
            data_dir.display()
        ),
    }
}
