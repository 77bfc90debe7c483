//! The syslog channel to a SIEM: one RFC 5424 message (or CEF inside one) per event, over
//! UDP (one datagram), TCP with RFC 6587 octet counting (`LEN SP MSG`), or TLS per RFC 5425
//! (the same framing inside rustls, the collector's certificate verified).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use super::config::{SyslogConfig, SyslogFormat, SyslogTransport};
use super::{format, tls, Event};

/// Sends one event to one collector; the error says what failed and what to check.
pub fn send(cfg: &SyslogConfig, appliance: &str, event: &Event) -> Result<(), String> {
    let msg = format::rfc5424(
        event,
        appliance,
        cfg.facility_code(),
        cfg.format == SyslogFormat::Cef,
    );
    let id = cfg.id();
    let addrs = resolve(cfg).map_err(|e| format!("{id}: {e}"))?;
    match cfg.transport {
        SyslogTransport::Udp => send_udp(&addrs, &msg),
        SyslogTransport::Tcp => {
            let mut s = connect(&addrs, cfg.timeout())?;
            s.write_all(&octet_counted(&msg))
                .and_then(|()| s.flush())
                .map_err(|e| format!("sending failed: {e}"))?;
            close_tcp(s);
            Ok(())
        }
        SyslogTransport::Tls => send_tls(cfg, &addrs, &msg),
    }
    .map_err(|e| format!("syslog to {id} failed: {e}"))
}

/// RFC 6587 §3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`.
pub(crate) fn octet_counted(msg: &[u8]) -> Vec<u8> {
    let mut framed = format!("{} ", msg.len()).into_bytes();
    framed.extend_from_slice(msg);
    framed
}

fn resolve(cfg: &SyslogConfig) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (cfg.address.as_str(), cfg.port())
        .to_socket_addrs()
        .map_err(|e| {
            format!(
                "cannot resolve {} ({e}); check notify.syslog.address",
                cfg.address
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "{} has no address; check notify.syslog.address",
            cfg.address
        ));
    }
    Ok(addrs)
}

fn send_udp(addrs: &[SocketAddr], msg: &[u8]) -> Result<(), String> {
    let addr = addrs[0];
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(local).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    sock.send_to(msg, addr).map(|_| ()).map_err(|e| {
        format!("cannot send to {addr}: {e}; check notify.syslog.address and port, and the network")
    })
}

fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    let mut last = String::new();
    for a in addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(timeout));
                let _ = s.set_write_timeout(Some(timeout));
                return Ok(s);
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    Err(format!(
        "{last}; check notify.syslog.address and port, that the collector runs, and the network"
    ))
}

/// Half-closes and waits briefly for the collector to close too, so that a message is not
/// lost to a reset when the process exits right after sending.
fn close_tcp(mut s: TcpStream) {
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 256];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

fn send_tls(cfg: &SyslogConfig, addrs: &[SocketAddr], msg: &[u8]) -> Result<(), String> {
    let config = tls::client_config(cfg.ca_file.as_deref(), "notify.syslog.ca_file")?;
    let name = ServerName::try_from(cfg.address.clone()).map_err(|e| {
        format!(
            "{:?} is not a host name or IP address for TLS: {e}",
            cfg.address
        )
    })?;
    let conn = ClientConnection::new(config, name).map_err(|e| format!("TLS setup failed: {e}"))?;
    let sock = connect(addrs, cfg.timeout())?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            let ca = match &cfg.ca_file {
                Some(p) => format!("notify.syslog.ca_file ({})", p.display()),
                None => "the system's CA roots (set notify.syslog.ca_file)".into(),
            };
            return Err(format!("the TLS handshake failed, the collector's certificate was not verified ({e}); check that it is signed by {ca} and names {}", cfg.address));
        }
    }
    tls.write_all(&octet_counted(msg))
        .and_then(|()| tls.flush())
        .map_err(|e| format!("sending failed: {e}"))?;
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
    close_tcp(tls.sock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_counting_counts_bytes() {
        assert_eq!(
            octet_counted(b"<13>1 - - - - - - hi"),
            b"20 <13>1 - - - - - - hi"
        );
        // Bytes, not characters.
        assert_eq!(octet_counted("é".as_bytes()), b"2 \xc3\xa9");
    }
}
