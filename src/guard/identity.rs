//! [`SelfIdentity`]: what "this appliance" is, gathered once per command by
//! [`SelfIdentity::load`] (interfaces, host names, /etc/hosts names of self addresses, SSH
//! host keys, mounts). This is the only place the guard reads the machine; every decision
//! in [`super`] takes the identity as input, so it can be tested with tables.

use std::net::IpAddr;
use std::path::PathBuf;

use super::literal;
use super::mount::{parse_mountinfo, Mount};
use super::normalize_name;

/// What "this appliance" is: addresses, names, SSH host keys and mounts, read once per
/// command by [`SelfIdentity::load`] and then only consulted.
#[derive(Debug, Clone, Default)]
pub struct SelfIdentity {
    /// (interface, address) for every local interface address.
    pub interfaces: Vec<(String, IpAddr)>,
    /// Lower-case names of this host (no trailing dot).
    pub names: Vec<String>,
    /// (file, key blob) of this host's SSH host keys.
    pub host_keys: Vec<(PathBuf, Vec<u8>)>,
    /// The mounts of this process's mount namespace (for `file://` targets).
    pub mounts: Vec<Mount>,
}

/// Decodes the key blob of an OpenSSH public key line (`type base64 [comment]`).
pub fn pubkey_blob(line: &str) -> Option<Vec<u8>> {
    let b64 = line.split_whitespace().nth(1)?;
    data_encoding::BASE64.decode(b64.as_bytes()).ok()
}

impl SelfIdentity {
    /// Reads the interfaces, names, host keys and mounts of this machine: the only I/O of
    /// the guard.
    pub fn load() -> SelfIdentity {
        let mut me = SelfIdentity::default();
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let Some(sa) = a.address else { continue };
                let ip = if let Some(v4) = sa.as_sockaddr_in() {
                    IpAddr::V4(v4.ip())
                } else if let Some(v6) = sa.as_sockaddr_in6() {
                    IpAddr::V6(v6.ip())
                } else {
                    continue;
                };
                me.interfaces.push((a.interface_name.clone(), ip));
            }
        }
        if let Ok(h) = nix::unistd::gethostname() {
            me.add_name(&h.to_string_lossy());
        }
        if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
            me.add_name(h.trim());
        }
        if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
            me.add_hosts_file(&hosts);
        }
        if let Ok(rd) = std::fs::read_dir("/etc/ssh") {
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("ssh_host_") && n.ends_with("_key.pub"))
                })
                .collect();
            files.sort();
            for f in files {
                if let Some(blob) = std::fs::read_to_string(&f)
                    .ok()
                    .and_then(|t| pubkey_blob(&t))
                {
                    me.host_keys.push((f, blob));
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") {
            me.mounts = parse_mountinfo(&text);
        }
        me
    }

    /// Adds a name of this host (normalized).
    pub(crate) fn add_name(&mut self, n: &str) {
        let n = normalize_name(n);
        if !n.is_empty() && !self.names.contains(&n) {
            self.names.push(n);
        }
    }

    /// Adds every name of every /etc/hosts line whose address is a self address.
    pub(crate) fn add_hosts_file(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let Some(addr) = fields.next().and_then(literal::parse) else {
                continue;
            };
            let names: Vec<&str> = fields.collect();
            if self.address_rule(addr).is_some() {
                for n in names {
                    self.add_name(n);
                }
            } else {
                // A name listed with a self name on another line is still self.
                let hit = names
                    .iter()
                    .any(|n| self.names.contains(&normalize_name(n)));
                if hit {
                    for n in names {
                        self.add_name(n);
                    }
                }
            }
        }
    }
}
