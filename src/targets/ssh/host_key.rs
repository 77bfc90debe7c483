//! Host keys: the known_hosts lookup (plain, unhashed entries), the pinned-key check every
//! connection makes, and pinning a key the operator confirmed (`target accept-host-key`).

use std::io::Write;
use std::path::Path;

use crate::guard::{self, SelfIdentity};
use crate::targets::{SshUrl, TargetError, TargetSpec};

/// The SSH key type name inside a public key blob (`ssh-ed25519`...).
pub fn blob_key_type(blob: &[u8]) -> String {
    let n = blob
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0);
    blob.get(4..4 + n)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The known_hosts host pattern: `host`, or `[host]:port` for a non-22 port.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// What known_hosts says about a presented key.
#[derive(Debug, PartialEq, Eq)]
pub enum Pinned {
    /// The key is pinned for this host.
    Match,
    /// Another key is pinned for this host.
    Mismatch,
    /// Nothing is pinned for this host.
    Unknown,
}

/// The key blobs pinned for `pattern` in known_hosts text (plain, unhashed entries; an
/// entry whose key does not decode counts as an empty blob).
fn pinned_for(known_hosts: &str, pattern: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(hosts), Some(_kt), Some(b64)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if hosts.split(',').any(|h| h.eq_ignore_ascii_case(pattern)) {
            out.push(
                data_encoding::BASE64
                    .decode(b64.as_bytes())
                    .unwrap_or_default(),
            );
        }
    }
    out
}

/// Looks `blob` up for `pattern` in known_hosts text (plain, unhashed entries).
pub fn lookup(known_hosts: &str, pattern: &str, blob: &[u8]) -> Pinned {
    let pinned = pinned_for(known_hosts, pattern);
    if pinned.iter().any(|b| b == blob) {
        Pinned::Match
    } else if pinned.is_empty() {
        Pinned::Unknown
    } else {
        Pinned::Mismatch
    }
}

/// Refuses a target whose pinned host key is this appliance's own (the guard's rule):
/// `ssh` accepts only the pinned keys, so this is the check of the key it will be shown.
pub(super) fn check_not_own(
    url: &str,
    known_hosts: &Path,
    target: &SshUrl,
    me: &SelfIdentity,
) -> Result<(), TargetError> {
    let text = std::fs::read_to_string(known_hosts).unwrap_or_default();
    for blob in pinned_for(&text, &host_pattern(&target.host, target.port)) {
        me.check_host_key(url, &blob)?;
    }
    Ok(())
}

/// The presented host key of an SSH server, after the guard passed.
pub struct HostKey {
    /// `host` or `[host]:port`.
    pub pattern: String,
    /// The key blob.
    pub blob: Vec<u8>,
}

impl HostKey {
    /// `SHA256:...`.
    pub fn fingerprint(&self) -> String {
        guard::fingerprint(&self.blob)
    }
    /// `ssh-ed25519`...
    pub(crate) fn key_type(&self) -> String {
        blob_key_type(&self.blob)
    }
}

/// Checks the presented `key` against the pinned keys in `known_hosts`: an unknown key
/// fails with its fingerprint and the command that pins it, a changed key fails loudly.
pub(super) fn check_pinned(
    url: &str,
    known_hosts: &Path,
    key: &HostKey,
) -> Result<(), TargetError> {
    let text = std::fs::read_to_string(known_hosts).unwrap_or_default();
    match lookup(&text, &key.pattern, &key.blob) {
        Pinned::Match => Ok(()),
        Pinned::Unknown => {
            let kt = key.key_type();
            Err(TargetError::HostKeyUnknown {
                target: url.to_string(),
                host: key.pattern.clone(),
                fingerprint: key.fingerprint(),
                short: kt
                    .trim_start_matches("ssh-")
                    .split('-')
                    .next()
                    .unwrap_or("*")
                    .to_string(),
                key_type: kt,
            })
        }
        Pinned::Mismatch => Err(TargetError::HostKeyMismatch {
            target: url.to_string(),
            host: key.pattern.clone(),
            fingerprint: key.fingerprint(),
            key_type: key.key_type(),
            known_hosts: known_hosts.display().to_string(),
        }),
    }
}

/// Appends the key to known_hosts (creating the file and its directory), unless pinned.
pub fn pin(spec: &TargetSpec, key: &HostKey) -> Result<bool, TargetError> {
    let url = spec.url.to_string();
    let kh = &spec.known_hosts;
    let text = std::fs::read_to_string(kh).unwrap_or_default();
    match lookup(&text, &key.pattern, &key.blob) {
        Pinned::Match => return Ok(false),
        Pinned::Mismatch => {
            return Err(TargetError::HostKeyMismatch {
                target: url,
                host: key.pattern.clone(),
                fingerprint: key.fingerprint(),
                key_type: key.key_type(),
                known_hosts: kh.display().to_string(),
            })
        }
        Pinned::Unknown => {}
    }
    if let Some(parent) = kh.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| TargetError::from_io(&url, "creating the known_hosts directory", &e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(kh)
        .map_err(|e| TargetError::from_io(&url, "opening known_hosts", &e))?;
    let mut line = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        line.push('\n');
    }
    line.push_str(&format!(
        "{} {} {}\n",
        key.pattern,
        key.key_type(),
        data_encoding::BASE64.encode(&key.blob)
    ));
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| TargetError::from_io(&url, "writing known_hosts", &e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_lookup() {
        let blob = vec![
            0, 0, 0, 11, b's', b's', b'h', b'-', b'e', b'd', b'2', b'5', b'5', b'1', b'9', 1, 2,
        ];
        let b64 = data_encoding::BASE64.encode(&blob);
        let text =
            format!("# c\nother ssh-ed25519 AAAA\n[10.0.0.2]:2222,alias ssh-ed25519 {b64}\n");
        assert_eq!(lookup(&text, "[10.0.0.2]:2222", &blob), Pinned::Match);
        assert_eq!(lookup(&text, "alias", &blob), Pinned::Match);
        assert_eq!(lookup(&text, "[10.0.0.2]:2222", &[1]), Pinned::Mismatch);
        assert_eq!(lookup(&text, "10.0.0.2", &blob), Pinned::Unknown);
        assert_eq!(blob_key_type(&blob), "ssh-ed25519");
        assert_eq!(host_pattern("h", 22), "h");
        assert_eq!(host_pattern("fd00::1", 2222), "[fd00::1]:2222");
    }
}
