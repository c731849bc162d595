//! The CLI's connection config: the robots it knows, the current one, their
//! credentials and the service secrets they handed out. One file, readable by
//! its owner only, replaced whole on every change so a crash never leaves half
//! of it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::paths;

/// The file names looked for in the config directory, the first found wins;
/// a new config is written as YAML.
const YAML_FILE: &str = "config.yaml";
const JSON_FILE: &str = "config.json";
const LOCK_FILE: &str = "config.lock";

/// Everything the CLI remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The robot commands talk to when neither `--robot` nor `ZROBOT_URL` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Robots by the name given to `zrobot robot connect`.
    #[serde(default)]
    pub robots: BTreeMap<String, RobotEntry>,
}

/// One robot and what the CLI presents to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotEntry {
    pub url: String,
    /// A JWT, sent both as `ZrobotAdmin` and `ZrobotUser`: the robot grants
    /// whichever of its organizations the token's scope names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    /// The god token of a robot started with `--god`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub god_token: Option<String>,
    /// Secrets of the services created through this CLI, by service guid.
    /// The robot keeps only their hashes: lose them here and only an admin
    /// can manage those services.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<Uuid, StoredSecret>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSecret {
    /// The service's name when it was created, to address it by name.
    pub name: String,
    pub secret: String,
}

impl RobotEntry {
    /// The stored secret of the service named `name`, with its guid.
    pub fn secret_by_name(&self, name: &str) -> Option<(Uuid, &StoredSecret)> {
        self.secrets
            .iter()
            .find(|(_, s)| s.name == name)
            .map(|(g, s)| (*g, s))
    }
}

/// Where the config lives, and the lock that serializes its changes.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    dir: PathBuf,
}

impl ConfigFile {
    /// The config of `$XDG_CONFIG_HOME/zrobot` (else `~/.config/zrobot`).
    pub fn default_location() -> ConfigFile {
        ConfigFile {
            dir: paths::default_config_dir(),
        }
    }

    /// The file read and written: `config.yaml`, or `config.json` if only that exists.
    pub fn path(&self) -> PathBuf {
        let yaml = self.dir.join(YAML_FILE);
        let json = self.dir.join(JSON_FILE);
        if !yaml.exists() && json.exists() {
            json
        } else {
            yaml
        }
    }

    /// The config as it is on disk; empty when there is none yet.
    pub fn load(&self) -> Result<Config> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => bail!(
                "cannot read the CLI config {}: {e}; check its permissions",
                path.display()
            ),
        };
        let parsed = if is_json(&path) {
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
        } else if text.trim().is_empty() {
            Ok(Config::default())
        } else {
            zrobot_core::yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
        };
        parsed.with_context(|| {
            format!(
                "the CLI config {} does not parse; fix it by hand, or move it away and run `zrobot robot connect` again",
                path.display()
            )
        })
    }

    /// Loads the config, lets `change` edit it and writes it back, holding a
    /// lock meanwhile: two commands run at once (a script creating services
    /// in parallel) must not lose each other's secrets.
    pub fn update<T>(&self, change: impl FnOnce(&mut Config) -> Result<T>) -> Result<T> {
        paths::ensure_private_dir(&self.dir)?;
        // The directory holds tokens: keep it private even if it was made by hand.
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        let _lock = Lock::take(&self.dir.join(LOCK_FILE))?;
        let mut config = self.load()?;
        let out = change(&mut config)?;
        self.write(&config)?;
        Ok(out)
    }

    /// Writes a temp file (mode 0600) beside the config and renames it over.
    fn write(&self, config: &Config) -> Result<()> {
        let path = self.path();
        let text = if is_json(&path) {
            serde_json::to_string_pretty(config)? + "\n"
        } else {
            format!(
                "# zrobot CLI config: robots, credentials and service secrets. Keep it private.\n{}",
                serde_saphyr::to_string(config).map_err(|e| anyhow::anyhow!("{e}"))?
            )
        };
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let written = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // `mode` applies only to a file that did not exist.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            bail!("cannot write the CLI config {}: {e}", path.display());
        }
        Ok(())
    }
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// An exclusive `flock` on the lock file, released when dropped (or when the
/// process dies, so a crash never leaves the config locked).
struct Lock {
    _file: File,
}

impl Lock {
    fn take(path: &Path) -> Result<Lock> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "cannot lock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(Lock { _file: f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_yaml_and_json_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile {
            dir: dir.path().join("zrobot"),
        };
        let guid = Uuid::new_v4();
        file.update(|c| {
            c.current = Some("local".into());
            c.robots.insert(
                "local".into(),
                RobotEntry {
                    url: "http://127.0.0.1:6600".into(),
                    jwt: Some("j.w.t".into()),
                    god_token: None,
                    secrets: BTreeMap::from([(
                        guid,
                        StoredSecret {
                            name: "node1".into(),
                            secret: "s3cr3t".into(),
                        },
                    )]),
                },
            );
            Ok(())
        })
        .unwrap();
        let path = file.path();
        assert!(path.ends_with("config.yaml"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(dir.path().join("zrobot"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let back = file.load().unwrap();
        assert_eq!(
            back.robots["local"].secret_by_name("node1").unwrap().0,
            guid
        );

        // A JSON config is read and kept as JSON.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(
            dir.path().join("zrobot/config.json"),
            serde_json::to_string(&back).unwrap(),
        )
        .unwrap();
        file.update(|c| {
            c.current = None;
            Ok(())
        })
        .unwrap();
        assert!(file.path().ends_with("config.json"));
        let again = file.load().unwrap();
        assert_eq!(again.current, None);
        assert_eq!(again.robots, back.robots);
    }
}
