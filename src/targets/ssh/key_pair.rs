//! The appliance's own SSH key pair (`target ssh-key`), made with `ssh-keygen`.

use std::path::{Path, PathBuf};

use crate::targets::TargetError;

/// Creates the appliance's ed25519 key pair at `identity` if missing (with `ssh-keygen`),
/// and returns the public key line.
pub fn ensure_key_pair(identity: &Path) -> Result<(String, bool), TargetError> {
    let label = format!("ssh key {}", identity.display());
    let pubp = pub_path(identity);
    let mut created = false;
    if !identity.exists() {
        if let Some(parent) = identity.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| TargetError::from_io(&label, "creating the key directory", &e))?;
        }
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("offbox@{host}"))
            .arg("-f")
            .arg(identity)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| TargetError::Credentials {
                target: label.clone(),
                detail: format!("cannot run ssh-keygen ({e}); install openssh-client"),
            })?;
        if !out.status.success() {
            return Err(TargetError::Credentials {
                target: label,
                detail: format!(
                    "ssh-keygen failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        created = true;
    }
    let line = std::fs::read_to_string(&pubp).map_err(|e| TargetError::Credentials {
        target: label,
        detail: format!("cannot read {}: {e}", pubp.display()),
    })?;
    Ok((line.trim().to_string(), created))
}

/// The public key file of the private key `identity`.
pub(super) fn pub_path(identity: &Path) -> PathBuf {
    let mut p = identity.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}
