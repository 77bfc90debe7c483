//! The self-target guard: refuses any backup target that is this appliance, since a backup
//! stored on the appliance dies with it. There is no switch to turn it off.
//!
//! Rules ([`Rule`]), checked before connecting and again on the connected socket's peer
//! address (so a DNS answer that changes between the two is caught):
//! - loopback and unspecified addresses in every spelling (IPv4, IPv6, IPv4-mapped,
//!   -compatible, NAT64 and 6to4 IPv6, and the `inet_aton` forms `127.1`, `0x7f.1`,
//!   `0177.0.0.1`, `2130706433`);
//! - every address of every local interface;
//! - the host name, `localhost`, `*.localhost`, and every /etc/hosts name of a self address;
//! - for SSH, a server presenting one of this appliance's own host keys;
//! - for `file://`, a local filesystem, or a network mount served by this appliance.
//!
//! A refusal names the rule and what the target resolved to.

pub mod literal;
pub mod mount;

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::targets::TargetError;

/// The rule that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// 127.0.0.0/8, ::1, and their embeddings.
    Loopback,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// An address of a local interface (its name).
    LocalInterface(String),
    /// A name of this appliance.
    LocalName,
    /// The SSH server presents this appliance's host key (the file).
    OwnHostKey(PathBuf),
    /// `file://` on a local (non-network) filesystem.
    LocalFilesystem,
    /// `file://` on a network mount whose server is this appliance.
    MountServedBySelf,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Loopback => write!(f, "loopback address"),
            Rule::Unspecified => write!(f, "unspecified address (means this host)"),
            Rule::LocalInterface(i) => write!(f, "address of local interface {i}"),
            Rule::LocalName => write!(f, "name of this appliance"),
            Rule::OwnHostKey(p) => write!(f, "SSH host key of this appliance ({})", p.display()),
            Rule::LocalFilesystem => write!(f, "local filesystem, not a network mount"),
            Rule::MountServedBySelf => write!(f, "network mount served by this appliance"),
        }
    }
}

/// A refusal: the target is this appliance.
#[derive(Debug, Clone, thiserror::Error)]
#[error("refusing target {target}: it is this appliance (rule: {rule}; resolved to {resolved}). A backup kept on the appliance dies with it; use another host")]
pub struct Refusal {
    /// The rule that matched.
    pub rule: Rule,
    /// The target as given.
    pub target: String,
    /// What it resolved to.
    pub resolved: String,
}

/// What "this appliance" is: addresses, names and SSH host keys, read once per command.
#[derive(Debug, Clone, Default)]
pub struct SelfIdentity {
    /// (interface, address) for every local interface address.
    pub interfaces: Vec<(String, IpAddr)>,
    /// Lower-case names of this host (no trailing dot).
    pub names: Vec<String>,
    /// (file, key blob) of this host's SSH host keys.
    pub host_keys: Vec<(PathBuf, Vec<u8>)>,
}

/// Decodes the key blob of an OpenSSH public key line (`type base64 [comment]`).
pub fn pubkey_blob(line: &str) -> Option<Vec<u8>> {
    let b64 = line.split_whitespace().nth(1)?;
    data_encoding::BASE64.decode(b64.as_bytes()).ok()
}

impl SelfIdentity {
    /// Reads the interfaces, names and host keys of this machine.
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
        me
    }

    fn add_name(&mut self, n: &str) {
        let n = normalize_name(n);
        if !n.is_empty() && !self.names.contains(&n) {
            self.names.push(n);
        }
    }

    /// Adds every name of every /etc/hosts line whose address is a self address.
    pub fn add_hosts_file(&mut self, text: &str) {
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

    /// The rule an address matches, if it is this appliance.
    pub fn address_rule(&self, ip: IpAddr) -> Option<Rule> {
        let v4 = match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => literal::embedded_v4(&v6),
        };
        if let Some(v4) = v4 {
            if v4.is_loopback() {
                return Some(Rule::Loopback);
            }
            if v4.octets()[0] == 0 {
                return Some(Rule::Unspecified);
            }
        }
        if let IpAddr::V6(v6) = ip {
            if v6.is_loopback() {
                return Some(Rule::Loopback);
            }
            if v6.is_unspecified() {
                return Some(Rule::Unspecified);
            }
        }
        for (name, local) in &self.interfaces {
            let same = match (local, ip) {
                (a, b) if *a == b => true,
                (IpAddr::V4(a), _) => v4 == Some(*a),
                _ => false,
            };
            if same {
                return Some(Rule::LocalInterface(name.clone()));
            }
        }
        None
    }

    /// Refuses `ip` if it is this appliance.
    pub fn check_ip(&self, target: &str, ip: IpAddr) -> Result<(), Refusal> {
        match self.address_rule(ip) {
            Some(rule) => Err(Refusal {
                rule,
                target: target.to_string(),
                resolved: ip.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Checks the name and the literal spelling of `host`, without resolving it.
    pub fn check_name(&self, target: &str, host: &str) -> Result<Option<IpAddr>, Refusal> {
        if let Some(ip) = literal::parse(host) {
            self.check_ip(target, ip)?;
            return Ok(Some(ip));
        }
        let n = normalize_name(host);
        if n == "localhost" || n.ends_with(".localhost") || self.names.contains(&n) {
            return Err(Refusal {
                rule: Rule::LocalName,
                target: target.to_string(),
                resolved: n,
            });
        }
        Ok(None)
    }

    /// Resolves `host` and refuses it if its name or any of its addresses is this
    /// appliance. The caller connects only to the returned addresses, then calls
    /// [`SelfIdentity::check_peer`] on the connected socket.
    pub fn resolve(
        &self,
        target: &str,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, TargetError> {
        if let Some(ip) = self.check_name(target, host)? {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| TargetError::Unreachable {
                target: target.to_string(),
                detail: format!("cannot resolve {host}: {e}"),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(TargetError::Unreachable {
                target: target.to_string(),
                detail: format!("{host} has no address"),
            });
        }
        for a in &addrs {
            if let Some(rule) = self.address_rule(a.ip()) {
                return Err(Refusal {
                    rule,
                    target: target.to_string(),
                    resolved: format!("{host} -> {}", a.ip()),
                }
                .into());
            }
        }
        Ok(addrs)
    }

    /// Refuses a connected socket whose peer is this appliance.
    pub fn check_peer(&self, target: &str, peer: SocketAddr) -> Result<(), Refusal> {
        self.check_ip(target, peer.ip()).map_err(|mut r| {
            r.resolved = format!("connected peer {}", peer.ip());
            r
        })
    }

    /// Refuses an SSH server whose host key is one of this appliance's.
    pub fn check_host_key(&self, target: &str, blob: &[u8]) -> Result<(), Refusal> {
        for (file, own) in &self.host_keys {
            if own == blob {
                return Err(Refusal {
                    rule: Rule::OwnHostKey(file.clone()),
                    target: target.to_string(),
                    resolved: format!("server host key {}", fingerprint(blob)),
                });
            }
        }
        Ok(())
    }
}

/// Lower case, no trailing dot.
pub fn normalize_name(n: &str) -> String {
    n.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `SHA256:<base64>` fingerprint of an SSH key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, blob);
    format!("SHA256:{}", data_encoding::BASE64_NOPAD.encode(d.as_ref()))
}

/// Connects to the first reachable address with a timeout, then checks the peer.
pub fn connect_checked(
    me: &SelfIdentity,
    target: &str,
    host: &str,
    port: u16,
    timeout: std::time::Duration,
) -> Result<std::net::TcpStream, TargetError> {
    let addrs = me.resolve(target, host, port)?;
    let mut last = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                let peer = s
                    .peer_addr()
                    .map_err(|e| TargetError::from_io(target, "connecting", &e))?;
                me.check_peer(target, peer)?;
                s.set_read_timeout(Some(timeout)).ok();
                s.set_write_timeout(Some(timeout)).ok();
                return Ok(s);
            }
            Err(e) => last = Some((a, e)),
        }
    }
    let (a, e) = last.expect("at least one address");
    Err(match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => TargetError::Timeout {
            target: target.to_string(),
            op: format!("connecting to {a}"),
            secs: timeout.as_secs(),
        },
        _ => TargetError::Unreachable {
            target: target.to_string(),
            detail: format!("connecting to {a}: {e}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> SelfIdentity {
        let mut m = SelfIdentity {
            interfaces: vec![
                ("lo".into(), "127.0.0.1".parse().unwrap()),
                ("eth0".into(), "192.0.2.2".parse().unwrap()),
                ("eth0".into(), "fd00::2".parse().unwrap()),
            ],
            names: vec!["pam01".into()],
            host_keys: vec![("/etc/ssh/ssh_host_ed25519_key.pub".into(), vec![1, 2, 3])],
        };
        m.add_hosts_file(
            "127.0.0.1 localhost\n192.0.2.2 pam01.corp.example pam01 vault\n10.9.9.9 other\n::1 ip6-localhost ip6-loopback\n",
        );
        m
    }

    #[test]
    fn self_spellings_are_refused() {
        let m = me();
        let table: &[(&str, &str)] = &[
            ("127.0.0.1", "loopback"),
            ("127.1", "loopback"),
            ("127.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("2130706433", "loopback"),
            ("0x7f000001", "loopback"),
            ("0x7f.1", "loopback"),
            ("0177.0.0.1", "loopback"),
            ("017700000001", "loopback"),
            ("127.0.0.1.", "loopback"),
            ("::1", "loopback"),
            ("[::1]", "loopback"),
            ("0:0:0:0:0:0:0:1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:7f00:1", "loopback"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("192.0.2.2", "interface eth0"),
            ("3221225986", "interface eth0"),
            ("0xc0.0.2.2", "interface eth0"),
            ("::ffff:192.0.2.2", "interface eth0"),
            ("fd00::2", "interface eth0"),
            ("FD00:0::2", "interface eth0"),
            ("localhost", "name"),
            ("LOCALHOST.", "name"),
            ("foo.localhost", "name"),
            ("pam01", "name"),
            ("PAM01.corp.example", "name"),
            ("vault", "name"),
            ("ip6-loopback", "name"),
        ];
        for (host, want) in table {
            let r = m
                .check_name("t", host)
                .expect_err(&format!("{host} must be refused"));
            assert!(r.to_string().contains(want), "{host}: {r}");
        }
    }

    #[test]
    fn others_pass() {
        let m = me();
        for host in [
            "10.9.9.9",
            "192.0.2.3",
            "fd00::3",
            "other",
            "backup.example.net",
        ] {
            assert!(m.check_name("t", host).is_ok(), "{host}");
        }
        assert!(m.check_host_key("t", &[1, 2, 4]).is_ok());
        let r = m.check_host_key("t", &[1, 2, 3]).unwrap_err();
        assert!(
            r.to_string().contains("SSH host key of this appliance"),
            "{r}"
        );
        let r = m
            .check_peer("t", "[::ffff:127.0.0.1]:22".parse().unwrap())
            .unwrap_err();
        assert!(r.to_string().contains("connected peer"), "{r}");
    }

    #[test]
    fn real_machine_refuses_its_own_names() {
        let m = SelfIdentity::load();
        assert!(!m.interfaces.is_empty());
        let host = nix::unistd::gethostname().unwrap();
        let host = host.to_string_lossy();
        let e = m.resolve("t", &host, 22).unwrap_err();
        assert!(e.to_string().contains("refusing"), "{e}");
        for (_, ip) in &m.interfaces {
            assert!(m.resolve("t", &ip.to_string(), 22).is_err(), "{ip}");
        }
    }
}
