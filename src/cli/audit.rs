//! The audit line every opening through the recovery slot (and every forced acceptance of
//! an unverified archive) leaves: on standard error, and in syslog when `/dev/log` exists.

/// Writes an audit line to stderr and, when a syslog socket exists, to syslog (facility
/// authpriv, severity notice).
pub(super) fn audit(message: &str) {
    eprintln!("offbox: AUDIT: {message}");
    let line = format!("<85>offbox[{}]: AUDIT: {message}", std::process::id());
    if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = sock.send_to(line.as_bytes(), "/dev/log");
    }
}
