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
//! ```toml
//! [targets.fleet]
//! url = "s3://offbox-backups/fleet"          # archives go under fleet/APPLIANCE_ID/
//! endpoint = "https://s3.example.net"
//! access_key_id = "AKIA..."
//! secret_key_file = "/etc/offbox/s3.secret"
//! lock_mode = "COMPLIANCE"
//! retention_days = 30
//! ```
//!
//! Secrets are never in the config: it names the file or environment variable that holds
//! the SMB password or the S3 secret key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::secret::source::{read_secret_text, SecretSource};
use crate::secret::SecretText;

use super::url::{LockMode, S3Options};
use super::{TargetError, TargetUrl};

/// Default location of the appliance's SSH private key.
pub(crate) const DEFAULT_SSH_IDENTITY: &str = "/var/lib/offbox/ssh/id_ed25519";
/// Default location of the pinned host keys.
pub(crate) const DEFAULT_KNOWN_HOSTS: &str = "/var/lib/offbox/ssh/known_hosts";
/// Default network timeout in seconds.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// `[targets]`. Its own keys are listed in [`TARGETS_KEYS`]; every other key is a
/// `[targets.NAME]` table.
#[derive(Debug, Clone, Default)]
pub struct TargetsConfig {
    /// The appliance's SSH private key (the public key is this path + `.pub`).
    pub ssh_identity: Option<PathBuf>,
    /// The pinned SSH host keys (OpenSSH known_hosts format, plain host names).
    pub known_hosts: Option<PathBuf>,
    /// The target used when a command gets no `--to`/`--from`.
    pub default: Option<String>,
    /// Named targets.
    pub named: BTreeMap<String, TargetConfig>,
}

/// The keys of `[targets]` itself (any other key is a target name).
pub(crate) const TARGETS_KEYS: &[&str] = &["ssh_identity", "known_hosts", "default"];

/// One `[targets.NAME]` value: a table, read as [`TargetConfig`] straight from the
/// parser (so that its errors keep their position), and otherwise an error that says what
/// is expected.
struct TargetTable(TargetConfig);

impl<'de> Deserialize<'de> for TargetTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TargetTable;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "a [targets.NAME] table (the keys of [targets] itself are {})",
                    TARGETS_KEYS.join(", ")
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetTable, A::Error> {
                TargetConfig::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TargetTable)
            }
        }
        d.deserialize_map(V)
    }
}

// Written out rather than derived with `#[serde(flatten)]`: a flattened map buffers each
// `[targets.NAME]` table and reports any mistake in it only as "expected struct
// TargetConfig". Here each table is deserialized directly, so a typo is reported as
// "unknown field `pasword`, expected one of ..." with the table named.
impl<'de> Deserialize<'de> for TargetsConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TargetsConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the [targets] table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TargetsConfig, A::Error> {
                let mut out = TargetsConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "ssh_identity" => out.ssh_identity = Some(map.next_value()?),
                        "known_hosts" => out.known_hosts = Some(map.next_value()?),
                        "default" => out.default = Some(map.next_value()?),
                        _ => {
                            let TargetTable(t) = map.next_value()?;
                            out.named.insert(key, t);
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
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
    /// S3: the endpoint URL.
    pub endpoint: Option<String>,
    /// S3: the signing region.
    pub region: Option<String>,
    /// S3: path-style addressing.
    pub path_style: Option<bool>,
    /// S3: allow a plain-http endpoint (test beds only).
    pub allow_http: Option<bool>,
    /// S3: a PEM file of CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// S3: the access key id.
    pub access_key_id: Option<String>,
    /// S3: a file holding the secret access key.
    pub secret_key_file: Option<PathBuf>,
    /// S3: an environment variable holding the secret access key.
    pub secret_key_env: Option<String>,
    /// S3: Object Lock mode of every archive.
    pub lock_mode: Option<LockMode>,
    /// S3: Object Lock retention in days.
    pub retention_days: Option<u64>,
    /// S3: retention in seconds (test beds).
    pub retention_secs: Option<u64>,
    /// S3: bytes this appliance may use (free space is reported against it).
    pub quota_bytes: Option<u64>,
}

impl TargetConfig {
    /// The S3 settings of this table.
    fn s3_options(&self) -> S3Options {
        S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style.unwrap_or(false),
            allow_http: self.allow_http.unwrap_or(false),
            ca_file: self.ca_file.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_key_file: self.secret_key_file.clone(),
            secret_key_env: self.secret_key_env.clone(),
            lock_mode: self.lock_mode,
            retention_days: self.retention_days,
            retention_secs: self.retention_secs,
            quota_bytes: self.quota_bytes,
        }
    }
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
    /// The S3 settings (`None` for a bare URL, which S3 cannot use).
    pub s3: Option<S3Options>,
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
                s3: None,
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
            s3: Some(t.s3_options()),
        })
    }
}

impl TargetSpec {
    /// The password, from the file (first line, or the whole file without its final
    /// newline) or else the environment variable. Any character is allowed. It is read by
    /// the one secret reader ([`crate::secret::source::read_secret_text`]): zeroizing, and a
    /// warning on stderr when the file is readable by others.
    pub fn password(&self) -> Result<SecretText, TargetError> {
        let target = self.url.to_string();
        let source = match (&self.password_file, &self.password_env) {
            (Some(p), _) => SecretSource::File(p.clone()),
            (None, Some(var)) if std::env::var_os(var).is_some() => SecretSource::Env(var.clone()),
            _ => return Err(TargetError::Credentials {
                target,
                detail: "no password: set password_file or password_env in [targets.NAME] (for a URL: $OFFBOX_TARGET_PASSWORD_FILE or $OFFBOX_TARGET_PASSWORD)".into(),
            }),
        };
        read_secret_text(&source, "SMB password", "password_file").map_err(|e| {
            TargetError::Credentials {
                target,
                detail: e.to_string(),
            }
        })
    }
}
