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
//! A refusal ([`Refusal`]) names the rule and what the target resolved to.
//!
//! The guard is pure policy: it decides, it does not dial. What "this appliance" is comes
//! in as a [`SelfIdentity`], gathered once per command by [`SelfIdentity::load`] (the only
//! I/O here, in [`identity`]); addresses, names, host keys and filesystem facts come in as
//! arguments. Resolving and connecting are done by `targets::net`, which calls these
//! checks before connecting and on the connected peer. The guard imports nothing from the
//! layers above it.

pub(crate) mod identity;
pub mod literal;
pub mod mount;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use identity::{pubkey_blob, SelfIdentity};

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

impl SelfIdentity {
    /// The rule an address matches, if it is this appliance.
    pub(crate) fn address_rule(&self, ip: IpAddr) -> Option<Rule> {
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
    pub(crate) fn check_ip(&self, target: &str, ip: IpAddr) -> Result<(), Refusal> {
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
    pub(crate) fn check_name(&self, target: &str, host: &str) -> Result<Option<IpAddr>, Refusal> {
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

    /// Refuses `host` when any address it resolved to (`addrs`) is this appliance. The
    /// caller resolved it after [`SelfIdentity::check_name`] passed, and connects only to
    /// these addresses.
    pub(crate) fn check_resolved(
        &self,
        target: &str,
        host: &str,
        addrs: &[IpAddr],
    ) -> Result<(), Refusal> {
        for a in addrs {
            if let Some(rule) = self.address_rule(*a) {
                return Err(Refusal {
                    rule,
                    target: target.to_string(),
                    resolved: format!("{host} -> {a}"),
                });
            }
        }
        Ok(())
    }

    /// Refuses a connected socket whose peer is this appliance.
    pub(crate) fn check_peer(&self, target: &str, peer: SocketAddr) -> Result<(), Refusal> {
        self.check_ip(target, peer.ip()).map_err(|mut r| {
            r.resolved = format!("connected peer {}", peer.ip());
            r
        })
    }

    /// Refuses an SSH server whose host key is one of this appliance's.
    #[cfg_attr(not(feature = "target-ssh"), allow(dead_code))]
    pub(crate) fn check_host_key(&self, target: &str, blob: &[u8]) -> Result<(), Refusal> {
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
pub(crate) fn normalize_name(n: &str) -> String {
    n.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `SHA256:<base64>` fingerprint of an SSH key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, blob);
    format!("SHA256:{}", data_encoding::BASE64_NOPAD.encode(d.as_ref()))
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
            mounts: Vec::new(),
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
    fn resolved_addresses_and_peers() {
        let m = me();
        // (address, None when it is another host, else words of the refusal)
        let table: &[(&str, Option<&str>)] = &[
            ("10.9.9.9", None),
            ("2001:db8::1", None),
            ("192.0.2.3", None),
            ("192.0.2.2", Some("address of local interface eth0")),
            ("::ffff:192.0.2.2", Some("address of local interface eth0")),
            ("fd00::2", Some("address of local interface eth0")),
            ("127.3.4.5", Some("loopback")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
        ];
        let other: IpAddr = "10.9.9.8".parse().unwrap();
        for (ip, want) in table {
            let ip: IpAddr = ip.parse().unwrap();
            let resolved = m.check_resolved("t", "backup.example", &[other, ip]);
            let peer = m.check_peer("t", SocketAddr::new(ip, 22));
            match want {
                None => {
                    assert!(resolved.is_ok(), "{ip}");
                    assert!(peer.is_ok(), "{ip}");
                }
                Some(words) => {
                    let r = resolved.expect_err(&format!("{ip} must be refused"));
                    assert!(r.to_string().contains(words), "{ip}: {r}");
                    assert!(
                        r.to_string().contains(&format!("backup.example -> {ip}")),
                        "{r}"
                    );
                    let p = peer.expect_err(&format!("peer {ip} must be refused"));
                    assert!(p.to_string().contains(words), "{ip}: {p}");
                    assert!(p.to_string().contains("connected peer"), "{p}");
                }
            }
        }
        assert!(m.check_resolved("t", "x", &[]).is_ok());
    }
}
