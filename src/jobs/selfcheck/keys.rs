//! The key checks: the device access udev grants (`keys.device_access`, see
//! [`super::access`]), the PIN file (`keys.pin_file`: readable, not empty, not writable by
//! others, and private), and the HSM or TPM itself: reachable with that PIN
//! (`keys.device`), holding a current key-encryption key (`keys.kek`) and the archive
//! signing key (`keys.signing_key`). No data key is wrapped and nothing is signed.

use std::os::unix::fs::MetadataExt;

use super::super::JobError;
use super::{access, Check};
use crate::format::header::hex;
use crate::format::signature::PublicKey;
use crate::keys::pin::{PinError, SecretSource};
use crate::keys::{open_device, Backend, KeyError, KeysConfig};
use crate::secret::source::{fix_owner, permission_warning};

/// The key checks, and the device's signing keys (current first) when it gave them.
pub(super) struct KeyChecks {
    /// `keys.device_access`, `keys.pin_file`, `keys.device`, `keys.kek`, `keys.signing_key`.
    pub checks: Vec<Check>,
    /// The signing public keys, for `recovery.signers`.
    pub signing: Option<Vec<PublicKey>>,
}

/// Runs the key checks (see the module doc).
pub(super) fn check(keys: &KeysConfig) -> KeyChecks {
    let mut checks = vec![access::check(keys), pin_file(keys)];
    let mut signing = None;
    let device = open_device(keys).and_then(|mut d| {
        let status = d.status()?;
        Ok((d, status))
    });
    match device {
        Err(e) => {
            let e = JobError::Key(e);
            checks.push(Check::failed("keys.device", &e));
            let not_checked = |name: &str| {
                Check::fail(
                    name,
                    "key",
                    4,
                    "not checked: the HSM or TPM could not be used (see keys.device)",
                    e.hint(),
                )
            };
            checks.push(not_checked("keys.kek"));
            checks.push(not_checked("keys.signing_key"));
        }
        Ok((mut d, status)) => {
            checks.push(Check::ok(
                "keys.device",
                format!("{} {}: {}", status.backend, status.module, status.device),
            ));
            checks.push(match status.versions.iter().find(|v| v.current) {
                Some(v) => Check::ok(
                    "keys.kek",
                    format!(
                        "key-encryption key version {} is current ({} version(s) held): {}",
                        v.version,
                        status.versions.len(),
                        v.location
                    ),
                ),
                None => Check::fail(
                    "keys.kek",
                    "key",
                    4,
                    format!(
                        "the {} holds no key-encryption key, so no archive can be made",
                        d.name()
                    ),
                    "run `offbox keys init` (docs/ceremonies.md), then `offbox recovery init` or `recovery rotate`",
                ),
            });
            let keys = d.signing_key().and_then(|current| {
                let mut all = d.signing_keys()?;
                all.retain(|k| *k != current);
                all.insert(0, current);
                Ok(all)
            });
            checks.push(match keys {
                Ok(keys) => {
                    let c = Check::ok(
                        "keys.signing_key",
                        format!(
                            "archive signing key {} ({} generation(s) held)",
                            hex(&keys[0].key_id()),
                            keys.len()
                        ),
                    );
                    signing = Some(keys);
                    c
                }
                Err(e) => Check::failed("keys.signing_key", &JobError::Key(e)),
            });
        }
    }
    KeyChecks { checks, signing }
}

/// `keys.pin_file`: where the PKCS#11 PIN comes from, and that it is safe.
fn pin_file(keys: &KeysConfig) -> Check {
    const NAME: &str = "keys.pin_file";
    const WHAT: &str = "PKCS#11 PIN";
    let source = match (keys.backend, keys.pkcs11.as_ref()) {
        (Backend::Pkcs11, Some(p)) => p.pin_source(),
        _ => return Check::ok(NAME, "the TPM backend uses no PIN"),
    };
    let pin_error = |e: PinError| Check::failed(NAME, &JobError::Key(KeyError::Pin(e)));
    let path = match source {
        SecretSource::Env(var) => {
            return match std::env::var_os(&var) {
                Some(v) if !v.is_empty() => Check::ok(
                    NAME,
                    format!("the PIN comes from environment variable {var}, which is set"),
                ),
                Some(_) => pin_error(PinError::Empty {
                    what: WHAT,
                    source_desc: format!("environment variable {var}"),
                }),
                None => pin_error(PinError::EnvMissing {
                    what: WHAT,
                    var,
                    file_key: "pin_file",
                }),
            };
        }
        SecretSource::File(p) => p,
    };
    let file_err = |err| {
        pin_error(PinError::File {
            what: WHAT,
            path: path.display().to_string(),
            err,
        })
    };
    // Opened as the service reads it: the file itself, whatever a symlink pointed at.
    let meta = match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Ok(m) => m,
        Err(e) => return file_err(e),
    };
    if meta.len() == 0 {
        return pin_error(PinError::Empty {
            what: WHAT,
            source_desc: format!("file {}", path.display()),
        });
    }
    let euid = nix::unistd::geteuid().as_raw();
    let Some(warning) =
        permission_warning(&path, WHAT, meta.mode(), meta.uid(), euid, &fix_owner(euid))
    else {
        return Check::ok(
            NAME,
            format!(
                "{} is readable, mode {:04o}, owned by uid {}",
                path.display(),
                meta.mode() & 0o7777,
                meta.uid()
            ),
        );
    };
    let fix = format!("chmod 600 {}", path.display());
    if meta.mode() & 0o022 != 0 {
        // Whoever can write the PIN can make the service log in with a wrong one until the
        // token locks.
        return Check::fail(
            NAME,
            "key",
            4,
            warning,
            format!("{fix} now: others can replace the PIN, and wrong PINs lock the token"),
        );
    }
    Check::warn(
        NAME,
        "key",
        warning,
        format!("{fix}: only the service user (or root) should read the PIN"),
    )
}
