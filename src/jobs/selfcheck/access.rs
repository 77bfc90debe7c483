//! `keys.device_access`: the access that udev grants the service user (udev/60-offbox.rules:
//! group `offbox`, mode 0660) works for the user running the check. Each device node,
//! module or token directory the configured backend needs is opened as that user:
//!
//! - TPM: the TCTI's device node (`device:/dev/tpmrm0`), opened read-write; a simulator
//!   (`swtpm:`, `mssim:`) or the `tabrmd` D-Bus service has no node to check;
//! - PKCS#11: the module file, opened for reading; every HSM node the udev rules name that
//!   is present (`/dev/offbox-hsm-*` USB tokens, `/dev/k7pf*` Luna, `/dev/nshield*`
//!   nShield), opened read-write; and for SoftHSM the token directory of its config
//!   (`SOFTHSM2_CONF`), which must be readable and writable.
//!
//! Run as root, every open succeeds whatever the modes: the message says so, since the
//! unit runs the check as the service user.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

use super::Check;
use crate::keys::{Backend, KeysConfig};

const NAME: &str = "keys.device_access";
/// Where udev puts the device nodes of its rules (tests point it elsewhere).
const DEV: &str = "/dev";
/// Node name prefixes the udev rules grant: the USB tokens' symlinks, Luna, nShield.
const HSM_NODES: [&str; 3] = ["offbox-hsm-", "k7pf", "nshield"];
/// SoftHSM's config when `SOFTHSM2_CONF` is not set.
const SOFTHSM_DEFAULT_CONF: &str = "/etc/softhsm/softhsm2.conf";

/// `offbox (uid 998)`: the user the checks run as.
pub(super) fn current_user() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// What one access test found.
struct Tested {
    what: String,
    error: Option<String>,
}

/// The check for `keys` (see the module doc).
pub(super) fn check(keys: &KeysConfig) -> Check {
    let tested = match keys.backend {
        Backend::Tpm => tpm(keys),
        Backend::Pkcs11 => pkcs11(keys),
    };
    let user = current_user();
    let failed: Vec<String> = tested
        .iter()
        .filter_map(|t| t.error.as_ref().map(|e| format!("{}: {e}", t.what)))
        .collect();
    if !failed.is_empty() {
        return Check::fail(
            NAME,
            "key",
            4,
            format!("{user} cannot use the key device: {}", failed.join("; ")),
            "install udev/60-offbox.rules (then `udevadm control --reload && udevadm trigger`), put the service user in group offbox, and check the paths in [keys] (docs/operator-guide.md, section 1)",
        );
    }
    let list: Vec<&str> = tested.iter().map(|t| t.what.as_str()).collect();
    let root = if nix::unistd::geteuid().is_root() {
        " (as root every open succeeds: this proves nothing for the service user; the unit runs the check as that user)"
    } else {
        ""
    };
    Check::ok(
        NAME,
        if list.is_empty() {
            format!("no device node to check{root}")
        } else {
            format!("{user} can use {}{root}", list.join(", "))
        },
    )
}

fn tpm(keys: &KeysConfig) -> Vec<Tested> {
    let Some(tcti) = tcti(keys) else {
        return Vec::new();
    };
    let (name, conf) = tcti.split_once(':').unwrap_or((tcti.as_str(), ""));
    match name {
        "device" => {
            let node = if conf.is_empty() {
                "/dev/tpmrm0".to_string()
            } else {
                conf.split(',').next().unwrap_or(conf).to_string()
            };
            vec![open_rw(Path::new(&node))]
        }
        other => vec![Tested {
            what: format!(
                "the TCTI \"{other}\" (no device node: a simulator or the tpm2-abrmd service)"
            ),
            error: None,
        }],
    }
}

#[cfg(feature = "tpm")]
fn tcti(keys: &KeysConfig) -> Option<String> {
    keys.tpm.as_ref().map(|t| t.tcti.clone())
}

#[cfg(not(feature = "tpm"))]
fn tcti(keys: &KeysConfig) -> Option<String> {
    keys.tpm
        .as_ref()
        .and_then(|t| t.get("tcti"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

fn pkcs11(keys: &KeysConfig) -> Vec<Tested> {
    let Some(p) = keys.pkcs11.as_ref() else {
        return Vec::new();
    };
    let mut out = vec![Tested {
        what: format!("the PKCS#11 module {} (read)", p.module.display()),
        error: fs::File::open(&p.module).err().map(|e| e.to_string()),
    }];
    out.extend(hsm_nodes(Path::new(DEV)).iter().map(|n| open_rw(n)));
    let softhsm = p
        .module
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("softhsm"));
    if softhsm {
        out.push(softhsm_tokens());
    }
    out
}

/// The device nodes under `dev` that the udev rules give to group `offbox`.
fn hsm_nodes(dev: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dev)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    HSM_NODES.iter().any(|p| n.starts_with(p))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn open_rw(node: &Path) -> Tested {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(node);
    Tested {
        what: format!("{} (read-write)", node.display()),
        error: opened.err().map(|e| e.to_string()),
    }
}

/// SoftHSM's token directory, from its config (`SOFTHSM2_CONF`, else the system one).
fn softhsm_tokens() -> Tested {
    let conf = std::env::var_os("SOFTHSM2_CONF")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(SOFTHSM_DEFAULT_CONF), PathBuf::from);
    let text = match fs::read_to_string(&conf) {
        Ok(t) => t,
        Err(e) => {
            return Tested {
                what: format!("the SoftHSM config {} (read)", conf.display()),
                error: Some(e.to_string()),
            }
        }
    };
    let Some(dir) = text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "directories.tokendir").then(|| PathBuf::from(v.trim()))
    }) else {
        return Tested {
            what: format!("the SoftHSM config {}", conf.display()),
            error: Some("it sets no directories.tokendir".into()),
        };
    };
    let rw = AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK;
    Tested {
        what: format!("the SoftHSM token directory {} (read-write)", dir.display()),
        error: access(&dir, rw).err().map(|e| e.desc().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nodes_of_the_udev_rules_only() {
        let d = tempfile::tempdir().unwrap();
        for n in ["offbox-hsm-yubihsm0", "k7pf0", "nshield0", "tty0", "tpm0"] {
            fs::write(d.path().join(n), b"").unwrap();
        }
        let found: Vec<String> = hsm_nodes(d.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["k7pf0", "nshield0", "offbox-hsm-yubihsm0"]);
    }

    #[test]
    fn a_missing_node_is_reported_with_its_error() {
        let d = tempfile::tempdir().unwrap();
        let t = open_rw(&d.path().join("tpmrm9"));
        assert!(t.what.ends_with("tpmrm9 (read-write)"), "{}", t.what);
        assert!(t.error.unwrap().contains("No such file"));
    }
}
