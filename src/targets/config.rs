//! The `[targets]` section of the config: appliance-wide target settings (the SSH key pair
//! and the pinned host keys) and one `[targets.NAME]` table per named target.
//!
//! ```toml
//! [targets]
//! ssh_identity = "/var/lib/offbox/ssh/id_ed25519"   # default
//! known_hosts = "/var/lib/offbox/ssh/known_hosts"   # default
//! default = "dr-site"                               # used when --to is omitted
//!
//! [targets.dr-site]
//! url = "ssh://offbox@backup.example.net/srv/offbox"
//!
//! [targets.nas]
//! url = "smb://CORP;svc-backup@nas.example.net/backup/pam"
//! password_file = "/etc/offbox/nas.password"
//! ```
//!
//! Secrets are never in the config: it names the file or environment variable that holds
//! the SMB password.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::{TargetError, TargetUrl};

/// Default location of the appliance's SSH private key.
pub const DEFAULT_SSH_IDENTITY: &str = "/var/lib/offbox/ssh/id_ed25519";
/// Default location of the pinned host keys.
pub const DEFAULT_KNOWN_HOSTS: &str = "/var/lib/offbox/ssh/known_hosts";
/// Default network timeout in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// `[targets]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TargetsConfig {
    /// The appliance's SSH private key (the public key is this path + `.pub`).
    pub ssh_identity: Option<PathBuf>,
    /// The pinned SSH host keys (OpenSSH known_hosts format, plain host names).
    pub known_hosts: Option<PathBuf>,
    /// The target used when a command gets no `--to`/`--from`.
    pub default: Option<String>,
    /// Named targets.
    #[serde(flatten)]
    pub named: BTreeMap<String, TargetConfig>,
}

/// `[targets.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The target URL.
    pub url: String,
    /// A file holding the password (SMB), its first line or whole content.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password (SMB).
    pub password_env: Option<String>,
    /// Network timeout in seconds.
    pub timeout_secs: Option<u64>,
}

/// Everything needed to open one target, resolved from a name or a URL.
pub struct TargetSpec {
    /// The name as configured, or the URL as given.
    pub label: String,
    /// The parsed URL.
    pub url: TargetUrl,
    /// Where the password comes from (SMB).
    pub password_file: Option<PathBuf>,
    /// The environment variable holding the password (SMB).
    pub password_env: Option<String>,
    /// The SSH private key.
    pub ssh_identity: PathBuf,
    /// The pinned host keys.
    pub known_hosts: PathBuf,
    /// Network timeout in seconds.
    pub timeout_secs: u64,
}

impl TargetsConfig {
    /// The SSH private key path.
    pub fn ssh_identity(&self) -> PathBuf {
        self.ssh_identity
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SSH_IDENTITY))
    }

    /// The known_hosts path.
    pub fn known_hosts(&self) -> PathBuf {
        self.known_hosts
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KNOWN_HOSTS))
    }

    /// Resolves `NAME|URL`, or the default target when `None`.
    pub fn resolve(&self, what: Option<&str>) -> Result<TargetSpec, TargetError> {
        let what = match what {
            Some(w) => w.to_string(),
            None => match (&self.default, self.named.len()) {
                (Some(d), _) => d.clone(),
                (None, 1) => self.named.keys().next().cloned().unwrap_or_default(),
                _ => {
                    return Err(TargetError::Invalid {
                        target: "(none given)".into(),
                        why: "name a target with --to/--from NAME|URL, or set targets.default in the config".into(),
                    })
                }
            },
        };
        if TargetUrl::looks_like_url(&what) {
            return Ok(TargetSpec {
                url: TargetUrl::parse(&what)?,
                label: what,
                password_file: std::env::var_os("OFFBOX_TARGET_PASSWORD_FILE").map(PathBuf::from),
                password_env: Some("OFFBOX_TARGET_PASSWORD".into()),
                ssh_identity: self.ssh_identity(),
                known_hosts: self.known_hosts(),
                timeout_secs: DEFAULT_TIMEOUT_SECS,
            });
        }
        let t = self.named.get(&what).ok_or_else(|| TargetError::Invalid {
            target: what.clone(),
            why: format!(
                "no [targets.{what}] in the config (configured: {}); give a URL or add the table",
                if self.named.is_empty() {
                    "none".to_string()
                } else {
                    self.named.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        })?;
        Ok(TargetSpec {
            url: TargetUrl::parse(&t.url)?,
            label: what,
            password_file: t.password_file.clone(),
            password_env: t.password_env.clone(),
            ssh_identity: self.ssh_identity(),
            known_hosts: self.known_hosts(),
            timeout_secs: t.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
        })
    }
}

impl TargetSpec {
    /// The password, from the file (first line, or the whole file without its final
    /// newline) or else the environment variable. Any character is allowed.
    pub fn password(&self) -> Result<SecretString, TargetError> {
        let target = self.url.to_string();
        if let Some(p) = &self.password_file {
            let text = std::fs::read_to_string(p).map_err(|e| TargetError::Credentials {
                target: target.clone(),
                detail: format!("password file {}: {e}", p.display()),
            })?;
            let line = text.strip_suffix('\n').unwrap_or(&text);
            let line = line.strip_suffix('\r').unwrap_or(line);
            return Ok(SecretString::from(line.to_string()));
        }
        if let Some(var) = &self.password_env {
            if let Ok(v) = std::env::var(var) {
                return Ok(SecretString::from(v));
            }
        }
        Err(TargetError::Credentials {
            target,
            detail: "no password: set password_file or password_env in [targets.NAME] (for a URL: $OFFBOX_TARGET_PASSWORD_FILE or $OFFBOX_TARGET_PASSWORD)".into(),
        })
    }
}
