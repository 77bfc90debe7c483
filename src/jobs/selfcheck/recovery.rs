//! The recovery checks: a recovery public key is configured and parses
//! (`recovery.public_key`), and the shares' public metadata agrees with this appliance
//! (`recovery.signers`).
//!
//! The custodians' shares record the appliance signing keys whose archives break the glass
//! trusts; the ceremony writes the same keys, public, to `signing-keys.pem`, which the
//! security officer copies beside the config (docs/ceremonies.md, section 2 step 4). When
//! that file is there, the device's current signing key must be in it: otherwise the
//! signing key was replaced (`keys init --replace`) without a `recovery rotate`, and break
//! the glass on a bare machine would not trust the archives signed since.

use std::path::Path;

use super::super::signature::load_public_keys;
use super::super::JobError;
use super::Check;
use crate::config::Config;
use crate::format::header::hex;
use crate::format::signature::PublicKey;
use crate::keys::recovery::RecoveryPublicKey;
use crate::keys::KeyError;

/// The public file of the ceremony, looked for beside the config.
const SIGNERS_FILE: &str = "signing-keys.pem";

/// `recovery.public_key` and `recovery.signers`; `signing` are the device's signing keys,
/// current first (none when the device could not be read).
pub(super) fn check(cfg: &Config, config_path: &Path, signing: Option<&[PublicKey]>) -> Vec<Check> {
    vec![public_key(cfg), signers(config_path, signing)]
}

fn public_key(cfg: &Config) -> Check {
    const NAME: &str = "recovery.public_key";
    match cfg.recovery.public_key.as_deref() {
        Some(text) => match RecoveryPublicKey::parse(text) {
            Ok(k) => Check::ok(
                NAME,
                format!(
                    "recovery key {}: every archive gets a recovery slot",
                    hex(&k.key_id())
                ),
            ),
            Err(e) => Check::failed(NAME, &JobError::Key(KeyError::Recovery(e))),
        },
        None if cfg.recovery.allow_without_recovery => Check::warn(
            NAME,
            "usage",
            "no recovery key: recovery.allow_without_recovery = true, so archives die with this appliance's HSM or TPM",
            "run `offbox recovery init` (a key ceremony, docs/ceremonies.md) and remove allow_without_recovery",
        ),
        None => Check::failed(NAME, &JobError::NoRecoveryKey),
    }
}

fn signers(config_path: &Path, signing: Option<&[PublicKey]>) -> Check {
    const NAME: &str = "recovery.signers";
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let file = dir.join(SIGNERS_FILE);
    if !file.exists() {
        return Check::ok(
            NAME,
            format!(
                "no {} beside the config: nothing to compare (copy the ceremony's {SIGNERS_FILE} there to have it checked)",
                file.display()
            ),
        );
    }
    let listed = match load_public_keys(&file) {
        Ok(k) => k,
        Err(e) => {
            return Check::warn(
                NAME,
                "io",
                e.to_string(),
                format!(
                "copy the {SIGNERS_FILE} of the last recovery ceremony there, or remove the file"
            ),
            )
        }
    };
    let ids = |keys: &[PublicKey]| {
        keys.iter()
            .map(|k| hex(&k.key_id()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(current) = signing.and_then(<[PublicKey]>::first) else {
        return Check::ok(
            NAME,
            format!(
                "{} lists signing key(s) {}; not compared: the device gave no signing key (see keys.signing_key)",
                file.display(),
                ids(&listed)
            ),
        );
    };
    if listed.contains(current) {
        return Check::ok(
            NAME,
            format!(
                "the recovery shares vouch for the current signing key {} ({} lists {})",
                hex(&current.key_id()),
                file.display(),
                ids(&listed)
            ),
        );
    }
    Check::warn(
        NAME,
        "signature",
        format!(
            "the recovery shares vouch for signing key(s) {} ({}), but this appliance signs with {}: break the glass on a bare machine would not trust the archives signed since",
            ids(&listed),
            file.display(),
            hex(&current.key_id())
        ),
        format!(
            "run `offbox recovery rotate` (docs/ceremonies.md, section 4) and copy its new {SIGNERS_FILE} to {}",
            dir.display()
        ),
    )
}
