//! The configuration file (`offbox.toml`): what to back up and which keys protect it.
//!
//! Found at `--config FILE`, else `$OFFBOX_CONFIG`, else `/etc/offbox/offbox.toml`. Unknown
//! keys are errors, so a typo never silently disables a setting. Secrets are never in this
//! file: it names the files or environment variables that hold them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::format::{MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE};
use crate::keys::KeysConfig;
use crate::targets::name::MAX_APPLIANCE_ID;

mod edit;
pub mod schedule;
pub mod videos;
pub use edit::record_public_key;
pub use schedule::{CapacityConfig, KindSchedule, ScheduleConfig};
pub use videos::{FullEvery, VideosConfig};

/// Where the config is read from when no `--config` is given and `$OFFBOX_CONFIG` is unset.
pub(crate) const DEFAULT_PATH: &str = "/etc/offbox/offbox.toml";

/// The most zstd worker threads `backup.threads` may ask for (zstd's own limit on 64-bit
/// systems); 0 means one per core.
pub(crate) const MAX_THREADS: u32 = 256;

/// The state directory (run lock) when neither `$OFFBOX_STATE_DIR` nor
/// `service.state_dir` is set.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/offbox";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of this appliance, recorded in every archive. Defaults to /etc/machine-id.
    pub appliance_id: Option<String>,
    /// What the system backup covers.
    #[serde(default)]
    pub backup: BackupConfig,
    /// The hardware key custodian (`[keys]`, owned by [`crate::keys`]).
    pub keys: KeysConfig,
    /// The offline recovery key.
    #[serde(default)]
    pub recovery: RecoveryConfig,
    /// Where the secrets backup reads the vault's export.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Off-box targets (`[targets]`, `[targets.NAME]`); see docs/targets.md.
    #[serde(default)]
    pub targets: crate::targets::TargetsConfig,
    /// How the service runs (`[service]`).
    #[serde(default)]
    pub service: ServiceConfig,
    /// Notifications (`[notify]`, owned by [`crate::notify`]).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// What `offbox run` backs up, where and how often (`[schedule.KIND]`, see
    /// [`schedule`]).
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// The remote space rule (`[capacity]`).
    #[serde(default)]
    pub capacity: CapacityConfig,
    /// The incremental backup of session recordings (`[videos]`, opt-in).
    #[serde(default)]
    pub videos: VideosConfig,
}

/// `[service]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Where the appliance's run lock lives [default: /var/lib/offbox]; created 0700.
    pub state_dir: Option<PathBuf>,
}

/// `[backup]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Files and directories of the system backup.
    #[serde(default)]
    pub sources: Vec<PathBuf>,
    /// Exclude patterns (see `payload::exclude`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Plaintext bytes per segment.
    #[serde(default = "default_segment_size")]
    pub segment_size: u32,
    /// zstd level (1 is fast; 3 to 9 trade speed for size).
    #[serde(default = "default_level")]
    pub zstd_level: i32,
    /// zstd worker threads; 0 means one per core.
    #[serde(default)]
    pub threads: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            sources: Vec::new(),
            exclude: Vec::new(),
            segment_size: default_segment_size(),
            zstd_level: default_level(),
            threads: 0,
        }
    }
}

fn default_segment_size() -> u32 {
    crate::format::DEFAULT_SEGMENT_SIZE
}

fn default_level() -> i32 {
    1
}

/// `[recovery]`: the public half of the offline recovery key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryConfig {
    /// The recovery public key, as printed by `offbox recovery init`.
    pub public_key: Option<String>,
    /// Explicitly allow archives without a recovery slot. Such archives die with the
    /// appliance's HSM or TPM.
    #[serde(default)]
    pub allow_without_recovery: bool,
}

/// `[secrets]`: the vault export that the secrets backup encrypts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// A command (argv) whose standard output is the export. It is streamed, never stored.
    #[serde(default)]
    pub export_command: Vec<String>,
    /// A file to back up instead, when there is no export command.
    pub file: Option<PathBuf>,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config {path}: {err}; pass --config FILE or set OFFBOX_CONFIG")]
    Read {
        /// The path tried.
        path: String,
        /// The I/O error.
        err: std::io::Error,
    },
    /// The file is not valid.
    #[error("the config {path} is invalid: {detail}")]
    Parse {
        /// The path.
        path: String,
        /// What the parser said.
        detail: String,
    },
    /// A value is outside its range.
    #[error("the config {path} is invalid: {key} = {value} is out of range; {allowed}")]
    Value {
        /// The path.
        path: String,
        /// The key, with its table (`backup.segment_size`).
        key: &'static str,
        /// The value as written.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A setting is not allowed (a `[schedule.KIND]` or `[capacity]` key).
    #[error("the config {path} is invalid: {key} = {value} is not allowed; {allowed}")]
    Setting {
        /// The path.
        path: String,
        /// The key, with its tables (`schedule.system.keep_last`).
        key: String,
        /// The value as written.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A required table is missing.
    #[error("the config {path} sets keys.backend = \"{backend}\" but has no [keys.{backend}] table; add it (see docs/operator-guide.md)")]
    MissingBackend {
        /// The path.
        path: String,
        /// The backend name.
        backend: &'static str,
    },
    /// The config file could not be updated (see [`record_public_key`]).
    #[error("updating {path} failed: {err}")]
    Update {
        /// The path.
        path: String,
        /// What failed.
        err: std::io::Error,
    },
}

impl Config {
    /// The config path to use: the argument, `$OFFBOX_CONFIG`, or the default.
    pub(crate) fn resolve_path(arg: Option<&Path>) -> PathBuf {
        arg.map(Path::to_path_buf)
            .or_else(|| std::env::var_os("OFFBOX_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.display().to_string(),
            err,
        })?;
        Self::parse(&text, path)
    }

    /// Reads only the `[targets]` section of a config file, for `verify --keyless --from` on
    /// a backup server, whose config may hold nothing else (no `[keys]`): the other
    /// sections are neither required nor checked. A missing file gives an empty section
    /// unless `need_file` (a target URL works without any config, with the default SSH key
    /// and known_hosts paths).
    pub fn load_targets(
        path: &Path,
        need_file: bool,
    ) -> Result<crate::targets::TargetsConfig, ConfigError> {
        /// The section alone; serde skips every other key.
        #[derive(Deserialize)]
        struct Only {
            #[serde(default)]
            targets: crate::targets::TargetsConfig,
        }
        let text = match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !need_file => {
                return Ok(Default::default())
            }
            r => r.map_err(|err| ConfigError::Read {
                path: path.display().to_string(),
                err,
            })?,
        };
        let only: Only = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Ok(only.targets)
    }

    /// Parses config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            detail: match e.span().and_then(|span| table_at(text, span.start)) {
                Some(table) => format!("{}\n(in table [{table}])", e.to_string().trim_end()),
                None => e.to_string(),
            },
        })?;
        if let Some(backend) = cfg.keys.missing_table() {
            return Err(ConfigError::MissingBackend {
                path: path.display().to_string(),
                backend,
            });
        }
        cfg.validate(path)?;
        if let Some(id) = &cfg.appliance_id {
            crate::targets::name::check_appliance_id(id).map_err(|detail| ConfigError::Parse {
                path: path.display().to_string(),
                detail,
            })?;
        }
        Ok(cfg)
    }

    /// Checks the values whose range their types do not express, so that a wrong value is
    /// reported when the config is parsed, naming its key, before any HSM or TPM is opened
    /// (and not later as a misleading archive or zstd error). `path` is only used in
    /// messages.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |key, value: String, allowed: String| ConfigError::Value {
            path: path.display().to_string(),
            key,
            value,
            allowed,
        };
        let b = &self.backup;
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&b.segment_size) {
            return Err(err(
                "backup.segment_size",
                b.segment_size.to_string(),
                format!(
                    "it must be {MIN_SEGMENT_SIZE} to {MAX_SEGMENT_SIZE} bytes (4 KiB to 16 MiB; the default is {})",
                    crate::format::DEFAULT_SEGMENT_SIZE
                ),
            ));
        }
        let levels = zstd::compression_level_range();
        if !levels.contains(&b.zstd_level) {
            return Err(err(
                "backup.zstd_level",
                b.zstd_level.to_string(),
                format!(
                    "zstd accepts {} to {} (1 to 19 are the usual levels, 0 is zstd's default; the default here is {})",
                    levels.start(),
                    levels.end(),
                    default_level()
                ),
            ));
        }
        if b.threads > MAX_THREADS {
            return Err(err(
                "backup.threads",
                b.threads.to_string(),
                format!("it must be 0 (one zstd worker per core) to {MAX_THREADS}"),
            ));
        }
        if let Some(id) = &self.appliance_id {
            if !(1..=MAX_APPLIANCE_ID).contains(&id.len()) {
                return Err(err(
                    "appliance_id",
                    format!("{id:?}"),
                    format!(
                        "it is {} bytes long and must be 1 to {MAX_APPLIANCE_ID} (or leave it out to use /etc/machine-id)",
                        id.len()
                    ),
                ));
            }
        }
        self.notify
            .validate()
            .map_err(|e| err(e.key, e.value, e.allowed))?;
        self.videos
            .validate()
            .map_err(|detail| ConfigError::Parse {
                path: path.display().to_string(),
                detail,
            })?;
        let names: Vec<String> = self.targets.named.keys().cloned().collect();
        let has_default = self.targets.default.is_some() || names.len() == 1;
        schedule::validate(&self.schedule, &self.capacity, &names, has_default).map_err(
            |(key, value, allowed)| ConfigError::Setting {
                path: path.display().to_string(),
                key,
                value,
                allowed,
            },
        )?;
        // After the schedule's own keys, so that a wrong key there is named first.
        if !self.videos.enabled && self.schedule.get("videos").is_some_and(|k| k.enabled) {
            return Err(ConfigError::Parse {
                path: path.display().to_string(),
                detail: "[schedule.videos] needs the video backup switched on: [videos] enabled = true with its sources (or set schedule.videos.enabled = false)".into(),
            });
        }
        Ok(())
    }

    /// The state directory: `$OFFBOX_STATE_DIR`, else `service.state_dir`, else
    /// [`DEFAULT_STATE_DIR`].
    pub fn state_dir(&self) -> PathBuf {
        std::env::var_os("OFFBOX_STATE_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| self.service.state_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }

    /// The appliance id: configured, else /etc/machine-id, else the hostname.
    pub fn appliance_id(&self) -> String {
        if let Some(id) = &self.appliance_id {
            return id.clone();
        }
        if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
            let id = id.trim();
            if !id.is_empty() {
                return id.to_string();
            }
        }
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into())
    }
}

/// The name of the `[table]` (or `[[table]]`) whose header is on or above the line holding
/// byte `offset` of `text`, for messages: the parser shows the line of a mistake, which may
/// be far below its table's header.
fn table_at(text: &str, offset: usize) -> Option<&str> {
    let end = text.get(offset..).map_or(text.len(), |rest| {
        offset + rest.find('\n').unwrap_or(rest.len())
    });
    text.get(..end)?.lines().rev().find_map(|line| {
        let line = line.trim();
        let line = line.split_once('#').map_or(line, |(l, _)| l).trim_end();
        let name = line.strip_prefix('[')?.strip_suffix(']')?;
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name)
            .trim();
        let plain = |c: char| c.is_ascii_alphanumeric() || "_-.\" ".contains(c);
        (!name.is_empty() && name.chars().all(plain)).then_some(name)
    })
}

#[cfg(test)]
mod tests;
