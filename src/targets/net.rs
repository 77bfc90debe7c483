//! Dialling through the self-target guard, for every transport: resolve the host, check the
//! name and every address it resolved to ([`crate::guard`]), connect to those addresses
//! only, and check the connected socket's peer again (so a DNS answer that changes between
//! the two is caught).
//!
//! Two forms with the same rules and the same errors: [`connect`] returns a blocking
//! `std::net::TcpStream` (ssh), [`connect_async`] and [`dial_async`] a tokio stream for the
//! transports that keep a runtime (smb, nfs). A refusal is [`TargetError::Refused`]; a
//! connection that does not come up in time is [`TargetError::Timeout`]; any other failure
//! to resolve or connect is [`TargetError::Unreachable`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::TargetError;
use crate::guard::SelfIdentity;

/// Resolves `host` and refuses it if its name, its spelling or any of its addresses is this
/// appliance. Connect only to the returned addresses, then check the peer.
pub fn resolve(
    me: &SelfIdentity,
    target: &str,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, TargetError> {
    if let Some(ip) = me.check_name(target, host)? {
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
    let ips: Vec<_> = addrs.iter().map(SocketAddr::ip).collect();
    me.check_resolved(target, host, &ips)?;
    Ok(addrs)
}

/// The error of a failed connection attempt to `addr`.
fn connect_error(target: &str, addr: SocketAddr, timeout: Duration, e: &io::Error) -> TargetError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timed_out(target, addr, timeout),
        _ => TargetError::Unreachable {
            target: target.to_string(),
            detail: format!("connecting to {addr}: {e}"),
        },
    }
}

fn timed_out(target: &str, addr: SocketAddr, timeout: Duration) -> TargetError {
    TargetError::Timeout {
        target: target.to_string(),
        op: format!("connecting to {addr}"),
        secs: timeout.as_secs(),
    }
}

/// Checks the peer of a connected socket.
fn check_peer(
    me: &SelfIdentity,
    target: &str,
    peer: io::Result<SocketAddr>,
) -> Result<SocketAddr, TargetError> {
    let peer = peer.map_err(|e| TargetError::from_io(target, "connecting", &e))?;
    me.check_peer(target, peer)?;
    Ok(peer)
}

/// Connection attempts to the addresses of one host, in order: a refusal stops them at
/// once; otherwise the last address's error is the answer when none connects.
#[derive(Default)]
struct Attempts {
    last: Option<TargetError>,
}

impl Attempts {
    /// Records a failed attempt; a refusal comes back as the error to return now.
    fn failed(&mut self, e: TargetError) -> Result<(), TargetError> {
        match e {
            TargetError::Refused(_) => Err(e),
            e => {
                self.last = Some(e);
                Ok(())
            }
        }
    }

    /// The error when no address connected.
    fn finish(self) -> TargetError {
        self.last.expect("resolve returns at least one address")
    }
}

/// Blocking form: resolves and guards `host`, connects to the first reachable address
/// within `timeout`, guards the peer, and sets `timeout` as the read and write timeout.
pub fn connect(
    me: &SelfIdentity,
    target: &str,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<std::net::TcpStream, TargetError> {
    connect_addrs(me, target, &resolve(me, target, host, port)?, timeout)
}

/// Blocking form for addresses [`resolve`] already returned (the S3 client's resolver is
/// the guard, and its connector dials here): connects to the first reachable one within
/// `timeout` each, guards the peer, and sets `timeout` as the read and write timeout.
pub fn connect_addrs(
    me: &SelfIdentity,
    target: &str,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<std::net::TcpStream, TargetError> {
    let mut tries = Attempts::default();
    for a in addrs {
        match dial(me, target, *a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => tries.failed(e)?,
        }
    }
    if addrs.is_empty() {
        return Err(TargetError::Unreachable {
            target: target.to_string(),
            detail: "no address to connect to".into(),
        });
    }
    Err(tries.finish())
}

/// Connects to one address within `timeout`, guards the peer, and sets the read and write
/// timeouts.
fn dial(
    me: &SelfIdentity,
    target: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<std::net::TcpStream, TargetError> {
    let s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| connect_error(target, addr, timeout, &e))?;
    check_peer(me, target, s.peer_addr())?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    Ok(s)
}

/// Async form of [`connect`] for the transports that keep a tokio runtime: resolves and
/// guards `host`, connects to the first reachable address (each within `timeout`), and
/// guards the peer. Call it inside the runtime (see `targets::runtime`).
#[cfg(any(feature = "target-smb", feature = "target-nfs"))]
pub async fn connect_async(
    me: &SelfIdentity,
    target: &str,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, TargetError> {
    let mut tries = Attempts::default();
    for a in resolve(me, target, host, port)? {
        match dial_async(me, target, a, timeout).await {
            Ok(s) => return Ok(s),
            Err(e) => tries.failed(e)?,
        }
    }
    Err(tries.finish())
}

/// Connects to one address that [`resolve`] returned, within `timeout`, and guards the
/// peer (for a second connection to a host already resolved, as NFS makes to its MOUNT
/// and NFS ports).
#[cfg(any(feature = "target-smb", feature = "target-nfs"))]
pub async fn dial_async(
    me: &SelfIdentity,
    target: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, TargetError> {
    let s = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => return Err(timed_out(target, addr, timeout)),
        Ok(Err(e)) => return Err(connect_error(target, addr, timeout, &e)),
        Ok(Ok(s)) => s,
    };
    check_peer(me, target, s.peer_addr())?;
    s.set_nodelay(true).ok();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_machine_refuses_its_own_names() {
        let m = SelfIdentity::load();
        assert!(!m.interfaces.is_empty());
        let host = nix::unistd::gethostname().unwrap();
        let host = host.to_string_lossy();
        let e = resolve(&m, "t", &host, 22).unwrap_err();
        assert!(e.to_string().contains("refusing"), "{e}");
        for (_, ip) in &m.interfaces {
            assert!(resolve(&m, "t", &ip.to_string(), 22).is_err(), "{ip}");
        }
    }

    #[test]
    fn the_connected_peer_is_checked_too() {
        // Addresses handed over as if a resolver had said so (a DNS answer that changed
        // after the check): the connection is made, and then refused on its peer.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let m = SelfIdentity::load();
        let e = connect_addrs(&m, "t", &[addr], Duration::from_secs(3)).unwrap_err();
        assert!(matches!(e, TargetError::Refused(_)), "{e}");
        assert!(e.to_string().contains("refusing"), "{e}");
        let e = connect_addrs(&m, "t", &[], Duration::from_secs(3)).unwrap_err();
        assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    }

    #[test]
    fn a_refusal_stops_the_address_list() {
        let refusal = |x: &str| {
            TargetError::Refused(crate::guard::Refusal {
                rule: crate::guard::Rule::Loopback,
                target: "t".into(),
                resolved: x.into(),
            })
        };
        let timeout = |x: &str| {
            connect_error(
                "t",
                x.parse().unwrap(),
                Duration::from_secs(3),
                &io::Error::from(io::ErrorKind::TimedOut),
            )
        };
        let mut tries = Attempts::default();
        assert!(tries.failed(timeout("10.0.0.1:22")).is_ok());
        let e = tries.failed(refusal("10.0.0.2")).unwrap_err();
        assert!(matches!(e, TargetError::Refused(_)), "{e}");
        let mut tries = Attempts::default();
        tries.failed(timeout("10.0.0.1:22")).unwrap();
        tries.failed(timeout("10.0.0.2:22")).unwrap();
        let e = tries.finish();
        assert!(
            e.to_string()
                .contains("connecting to 10.0.0.2:22 timed out after 3s"),
            "{e}"
        );
        assert_eq!(e.retry(), crate::targets::Retry::Temporary);
    }
}
