//! SSH key policy for `target ssh-key` and `target accept-host-key`: the appliance's own key
//! pair is created once, and a server's host key is pinned only when the operator gave the
//! fingerprint it presents. The CLI only parses arguments and prints what these return.

use std::path::PathBuf;

use super::target::target_err;
use super::JobError;
use crate::config::Config;
use crate::guard::SelfIdentity;
use crate::targets::{self, TargetUrl};

/// The appliance's SSH key pair, as `target ssh-key` reports it.
#[derive(Debug, serde::Serialize)]
pub struct KeyPair {
    /// The private key file.
    pub identity: PathBuf,
    /// The public key line for the server's authorized_keys.
    pub public_key: String,
    /// Whether it was created now.
    pub created: bool,
}

/// Creates the appliance's SSH key pair if it is missing, and returns its public key line.
pub fn ensure_key_pair(cfg: &Config) -> Result<KeyPair, JobError> {
    let identity = cfg.targets.ssh_identity();
    #[cfg(feature = "target-ssh")]
    {
        let (public_key, created) = targets::ssh::ensure_key_pair(&identity)
            .map_err(|e| target_err("preparing the SSH key", e))?;
        Ok(KeyPair {
            identity,
            public_key,
            created,
        })
    }
    #[cfg(not(feature = "target-ssh"))]
    {
        let _ = identity;
        Err(target_err("target ssh-key", not_built("ssh")))
    }
}

/// Where a presented host key stands after [`accept_host_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(not(feature = "target-ssh"), allow(dead_code))] // a rescue kit has no ssh target
pub(crate) enum HostKeyStatus {
    /// Pinned now (`--fingerprint` matched).
    Pinned,
    /// It was pinned already; nothing changed.
    AlreadyPinned,
    /// Shown only (no `--fingerprint`): nothing is pinned for this host yet.
    NotPinned,
    /// Shown only: known_hosts pins another key for this host.
    AnotherKeyPinned,
}

/// A host key shown, pinned, or found pinned already by [`accept_host_key`].
#[derive(Debug, serde::Serialize)]
pub(crate) struct PinnedHostKey {
    /// `host` or `[host]:port`.
    pub host: String,
    /// `SHA256:...`.
    pub fingerprint: String,
    /// `ssh-ed25519`...
    pub key_type: String,
    /// Where it stands.
    pub status: HostKeyStatus,
    /// True when it was pinned by this run.
    pub added: bool,
    /// The known_hosts file.
    pub known_hosts: PathBuf,
}

/// Reads the host key that the ssh:// target `target` presents (through the guard) and
/// pins it when it matches `fingerprint`. Without a fingerprint it only says where the key
/// stands (print-only, not an error); with another fingerprint nothing is pinned and the
/// error says what the server presents.
pub(crate) fn accept_host_key(
    cfg: &Config,
    target: &str,
    fingerprint: Option<&str>,
    me: &SelfIdentity,
) -> Result<PinnedHostKey, JobError> {
    let spec = cfg
        .targets
        .resolve(Some(target))
        .map_err(|e| target_err("choosing the target", e))?;
    let TargetUrl::Ssh(url) = &spec.url else {
        return Err(target_err(
            "accept-host-key",
            targets::TargetError::Invalid {
                target: target.into(),
                why: "host keys exist for ssh:// targets only".into(),
            },
        ));
    };
    #[cfg(feature = "target-ssh")]
    {
        let key = targets::ssh::probe_host_key(&spec, url, me)
            .map_err(|e| target_err("reading the host key", e))?;
        let seen = key.fingerprint();
        let shown = |status| PinnedHostKey {
            host: key.pattern.clone(),
            fingerprint: seen.clone(),
            key_type: key.key_type(),
            status,
            added: status == HostKeyStatus::Pinned,
            known_hosts: spec.known_hosts.clone(),
        };
        let Some(want) = fingerprint else {
            let text = std::fs::read_to_string(&spec.known_hosts).unwrap_or_default();
            return Ok(shown(
                match targets::ssh::lookup(&text, &key.pattern, &key.blob) {
                    targets::ssh::Pinned::Match => HostKeyStatus::AlreadyPinned,
                    targets::ssh::Pinned::Unknown => HostKeyStatus::NotPinned,
                    targets::ssh::Pinned::Mismatch => HostKeyStatus::AnotherKeyPinned,
                },
            ));
        };
        if want.trim() != seen {
            return Err(JobError::refused(
                "accept-host-key",
                super::error::Policy::FingerprintMismatch,
                format!(
                    "{} presents {seen}, not the {want} you gave; nothing was pinned. Check that you are talking to the right server",
                    key.pattern
                ),
            ));
        }
        let added =
            targets::ssh::pin(&spec, &key).map_err(|e| target_err("pinning the host key", e))?;
        Ok(shown(if added {
            HostKeyStatus::Pinned
        } else {
            HostKeyStatus::AlreadyPinned
        }))
    }
    #[cfg(not(feature = "target-ssh"))]
    {
        let _ = (fingerprint, me, url);
        Err(target_err("accept-host-key", not_built(target)))
    }
}

#[cfg(not(feature = "target-ssh"))]
fn not_built(target: &str) -> targets::TargetError {
    targets::TargetError::NotBuilt {
        target: target.into(),
        scheme: "ssh".into(),
        feature: "target-ssh",
    }
}
