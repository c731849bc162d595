//! Where the robot and the CLI keep their files: the data directory (XDG data
//! dir), the god token inside it, and the lock that keeps a second robot out
//! of it.

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

const DATA_KEY_FILE: &str = "data.key";

/// The key that seals secret data fields: read from `file`, or from the
/// data directory's `data.key`, made (mode 0600, 64 hex digits) if missing.
/// Also says whether it was made now.
pub fn data_key(
    data_dir: &Path,
    file: Option<&Path>,
) -> Result<(zrobot_core::sealed::DataKey, Option<PathBuf>)> {
    let read = |path: &Path| -> Result<zrobot_core::sealed::DataKey> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the data key {}", path.display()))?;
        zrobot_core::sealed::DataKey::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("the data key {} is not one: {e}", path.display()))
    };
    if let Some(file) = file {
        return Ok((read(file)?, None));
    }
    let path = data_dir.join(DATA_KEY_FILE);
    if path.exists() {
        return Ok((read(&path)?, None));
    }
    let bytes = zrobot_core::sealed::DataKey::generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write the data key to {}", path.display()))?;
    f.write_all(format!("{}\n", zrobot_core::sealed::DataKey::hex(&bytes)).as_bytes())?;
    Ok((zrobot_core::sealed::DataKey::from_bytes(&bytes), Some(path)))
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

const LOCK_FILE: &str = "robot.lock";

/// The data directory held by this process: an exclusive `flock` on its
/// lock file, released when dropped or when the process dies (a crash
/// never leaves it locked).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory for this robot, or says which process holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    let path = data_dir.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = holder.trim();
        bail!(
            "the data directory {} is in use by another robot{}: stop it, or give this one another --data-dir",
            data_dir.display(),
            if holder.is_empty() { String::new() } else { format!(" ({holder})") }
        );
    }
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "pid {}", std::process::id())?;
    Ok(DataDirLock { _file: f })
}
