//! The configuration file (`offbox.toml`): what to back up and which keys protect it.
//!
//! Found at `--config FILE`, else `$OFFBOX_CONFIG`, else `/etc/offbox/offbox.toml`. Unknown
//! keys are errors, so a typo never silently disables a setting. Secrets are never in this
//! file: it names the files or environment variables that hold them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::keys::pkcs11::Pkcs11Config;
#[cfg(feature = "tpm")]
use crate::keys::tpm::TpmConfig;
#[cfg(not(feature = "tpm"))]
type TpmConfig = toml::Table;

/// Where the config is read from when no `--config` is given and `$OFFBOX_CONFIG` is unset.
pub const DEFAULT_PATH: &str = "/etc/offbox/offbox.toml";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of this appliance, recorded in every archive. Defaults to /etc/machine-id.
    pub appliance_id: Option<String>,
    /// What the system backup covers.
    #[serde(default)]
    pub backup: BackupConfig,
    /// The hardware key custodian.
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

/// Which hardware holds the key-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A PKCS#11 HSM or token.
    Pkcs11,
    /// A TPM 2.0.
    Tpm,
}

/// `[keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The backend in use.
    pub backend: Backend,
    /// `[keys.pkcs11]`.
    pub pkcs11: Option<Pkcs11Config>,
    /// `[keys.tpm]`.
    pub tpm: Option<TpmConfig>,
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
    /// A required table is missing.
    #[error("the config {path} sets keys.backend = \"{backend}\" but has no [keys.{backend}] table; add it (see docs/operator-guide.md)")]
    MissingBackend {
        /// The path.
        path: String,
        /// The backend name.
        backend: &'static str,
    },
}

impl Config {
    /// The config path to use: the argument, `$OFFBOX_CONFIG`, or the default.
    pub fn resolve_path(arg: Option<&Path>) -> PathBuf {
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

    /// Parses config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let missing = match cfg.keys.backend {
            Backend::Pkcs11 if cfg.keys.pkcs11.is_none() => Some("pkcs11"),
            Backend::Tpm if cfg.keys.tpm.is_none() => Some("tpm"),
            _ => None,
        };
        if let Some(backend) = missing {
            return Err(ConfigError::MissingBackend {
                path: path.display().to_string(),
                backend,
            });
        }
        Ok(cfg)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let e = Config::parse(
            "[keys]\nbackend = \"pkcs11\"\nbakend = 1\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `bakend`"), "{e}");
    }

    #[test]
    fn backend_table_is_required() {
        let e = Config::parse("[keys]\nbackend = \"pkcs11\"\n", Path::new("t.toml")).unwrap_err();
        assert_eq!(e.to_string(), "the config t.toml sets keys.backend = \"pkcs11\" but has no [keys.pkcs11] table; add it (see docs/operator-guide.md)");
    }
}
