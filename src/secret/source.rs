//! The one secret reader: PINs and passwords come from files or the environment, never from
//! the command line. Every secret of the config (the PKCS#11 user PIN through
//! `keys::pin`, a target's password through `targets::config`) is read by
//! [`read_secret_text`]: the value lands in a zeroizing [`SecretText`], and a file that
//! others may read (or that belongs to someone else) gets a warning on stderr that names
//! the fix ([`permission_warning`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use zeroize::Zeroizing;

use super::SecretText;

/// The largest secret file read: a PIN or a password is a few bytes, so anything bigger is
/// the wrong file.
pub const MAX_SECRET_FILE: usize = 64 * 1024;

/// The service user that owns the secret files (see docs/operator-guide.md).
pub const SERVICE_USER: &str = "offbox";

/// Where a secret comes from: a file (first line, trailing newline removed) or an
/// environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file whose content is the secret.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// Why a secret could not be read.
#[derive(Debug, Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read the {what} from {path}: {err}; check the path in the config and that the service user may read it")]
    File {
        /// What the secret is for ("PKCS#11 PIN", ...).
        what: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        err: std::io::Error,
    },
    /// The file is far larger than any PIN or password.
    #[error("the {what} file {path} is larger than {limit} bytes, so it is not a {what} file; check the path in the config")]
    TooLarge {
        /// What the secret is for.
        what: &'static str,
        /// The file.
        path: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The environment variable is not set.
    #[error("the {what} is expected in environment variable {var}, which is not set; set it, or configure a {file_key}")]
    EnvMissing {
        /// What the secret is for.
        what: &'static str,
        /// The variable name.
        var: String,
        /// The config key that names a file instead (`pin_file`, `password_file`).
        file_key: &'static str,
    },
    /// The secret is empty.
    #[error("the {what} from {source_desc} is empty; write the secret there")]
    Empty {
        /// What the secret is for.
        what: &'static str,
        /// Where it came from.
        source_desc: String,
    },
}

/// Reads a secret into a zeroizing value. One trailing "\n" or "\r\n" is removed from file
/// contents; an empty secret is an error. A file that its group or others may access, or
/// that is owned by neither the running user nor root, is still read, with a warning on
/// stderr that names the file and the fix. `file_key` is the config key that names a file
/// (for the message when an environment variable is missing).
pub(crate) fn read_secret_text(
    source: &SecretSource,
    what: &'static str,
    file_key: &'static str,
) -> Result<SecretText, SecretError> {
    let value = match source {
        SecretSource::File(path) => read_file(path, what)?,
        SecretSource::Env(var) => {
            let v = Zeroizing::new(std::env::var(var).map_err(|_| SecretError::EnvMissing {
                what,
                var: var.clone(),
                file_key,
            })?);
            SecretText::new(&v)
        }
    };
    if value.expose().is_empty() {
        return Err(SecretError::Empty {
            what,
            source_desc: source.to_string(),
        });
    }
    Ok(value)
}

fn read_file(path: &Path, what: &'static str) -> Result<SecretText, SecretError> {
    let file_err = |err| SecretError::File {
        what,
        path: path.display().to_string(),
        err,
    };
    let mut file = File::open(path).map_err(file_err)?;
    // The opened file itself is checked, whatever a symlink on the path pointed at.
    let meta = file.metadata().map_err(file_err)?;
    let euid = nix::unistd::geteuid().as_raw();
    if let Some(w) = permission_warning(path, what, meta.mode(), meta.uid(), euid, &fix_owner(euid))
    {
        eprintln!("offbox: warning: {w}");
    }
    // One fixed buffer, never reallocated, so no copy of the secret is left in freed memory.
    let mut buf = Zeroizing::new(vec![0u8; MAX_SECRET_FILE + 1]);
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(file_err(e)),
        }
    }
    if n > MAX_SECRET_FILE {
        return Err(SecretError::TooLarge {
            what,
            path: path.display().to_string(),
            limit: MAX_SECRET_FILE,
        });
    }
    let mut text = &buf[..n];
    if let Some(t) = text.strip_suffix(b"\n") {
        text = t.strip_suffix(b"\r").unwrap_or(t);
    }
    let text = std::str::from_utf8(text).map_err(|_| {
        file_err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the content is not UTF-8 text",
        ))
    })?;
    Ok(SecretText::new(text))
}

/// The user that should own a secret file: the running user, or the service user when
/// running as root.
pub(crate) fn fix_owner(euid: u32) -> String {
    if euid == 0 {
        return SERVICE_USER.to_string();
    }
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(euid)) {
        Ok(Some(u)) => u.name,
        _ => euid.to_string(),
    }
}

/// The warning for a secret file with mode `mode` owned by `owner`, read by user `euid`, or
/// `None` when the file is private to its owner and the owner is the running user or root.
/// `user` is who should own it (used in the `chown` of the fix).
pub(crate) fn permission_warning(
    path: &Path,
    what: &str,
    mode: u32,
    owner: u32,
    euid: u32,
    user: &str,
) -> Option<String> {
    let mut problems = Vec::new();
    match (mode & 0o040 != 0, mode & 0o004 != 0) {
        (true, true) => problems.push("readable by its group and by everyone".to_string()),
        (true, false) => problems.push("readable by its group".to_string()),
        (false, true) => problems.push("readable by everyone".to_string()),
        (false, false) => {}
    }
    if mode & 0o022 != 0 {
        problems.push("writable by others than its owner".to_string());
    }
    if owner != euid && owner != 0 {
        problems.push(format!(
            "owned by uid {owner}, neither the running user (uid {euid}) nor root"
        ));
    }
    if problems.is_empty() {
        return None;
    }
    let p = path.display();
    Some(format!(
        "the {what} file {p} is {} (mode {:04o}); fix: chmod 600 {p}; chown {user} {p}",
        problems.join(" and "),
        mode & 0o7777
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn secret_file(dir: &Path, mode: u32) -> PathBuf {
        let p = dir.join(format!("pin-{mode:o}"));
        std::fs::write(&p, "1234\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// The warning for a real file, as `read_secret_text` computes it.
    fn warning_for(p: &Path) -> Option<String> {
        let meta = std::fs::metadata(p).unwrap();
        let euid = nix::unistd::geteuid().as_raw();
        permission_warning(p, "PIN", meta.mode(), meta.uid(), euid, "offbox")
    }

    #[test]
    fn crlf_and_inner_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "a\nb\r\n").unwrap();
        let s = read_secret_text(&SecretSource::File(p), "password", "password_file").unwrap();
        assert_eq!(s.expose(), "a\nb");
    }

    #[test]
    fn world_readable_file_warns_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = secret_file(dir.path(), 0o644);
        let w = warning_for(&p).expect("a 0644 file warns");
        let d = p.display();
        assert_eq!(
            w,
            format!("the PIN file {d} is readable by its group and by everyone (mode 0644); fix: chmod 600 {d}; chown offbox {d}")
        );
        // Still read: the warning does not stop the service.
        let s = read_secret_text(&SecretSource::File(p), "PIN", "pin_file").unwrap();
        assert_eq!(s.expose(), "1234");
    }

    #[test]
    fn group_readable_file_warns() {
        let dir = tempfile::tempdir().unwrap();
        let p = secret_file(dir.path(), 0o640);
        let w = warning_for(&p).expect("a 0640 file warns");
        let d = p.display();
        assert!(
            w.starts_with(&format!(
                "the PIN file {d} is readable by its group (mode 0640); fix: chmod 600 {d}; chown offbox {d}"
            )),
            "{w}"
        );
    }

    #[test]
    fn private_file_does_not_warn() {
        let dir = tempfile::tempdir().unwrap();
        let p = secret_file(dir.path(), 0o600);
        assert_eq!(warning_for(&p), None);
        let p = secret_file(dir.path(), 0o400);
        assert_eq!(warning_for(&p), None);
    }

    #[test]
    fn foreign_owner_warns_but_root_does_not() {
        let p = Path::new("/etc/offbox/pin");
        let w = permission_warning(p, "PIN", 0o100600, 1234, 999, "offbox").unwrap();
        assert_eq!(
            w,
            "the PIN file /etc/offbox/pin is owned by uid 1234, neither the running user (uid 999) nor root (mode 0600); fix: chmod 600 /etc/offbox/pin; chown offbox /etc/offbox/pin"
        );
        assert_eq!(
            permission_warning(p, "PIN", 0o100600, 0, 999, "offbox"),
            None
        );
        assert_eq!(
            permission_warning(p, "PIN", 0o100600, 999, 999, "offbox"),
            None
        );
        let w = permission_warning(p, "PIN", 0o100662, 999, 999, "offbox").unwrap();
        assert!(
            w.contains(
                "is readable by its group and writable by others than its owner (mode 0662)"
            ),
            "{w}"
        );
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'x'; MAX_SECRET_FILE + 1]).unwrap();
        let e = read_secret_text(&SecretSource::File(p.clone()), "PIN", "pin_file")
            .err()
            .unwrap();
        assert!(matches!(e, SecretError::TooLarge { .. }), "{e}");
        // Exactly the limit is fine.
        std::fs::write(&p, vec![b'x'; MAX_SECRET_FILE]).unwrap();
        let s = read_secret_text(&SecretSource::File(p), "PIN", "pin_file").unwrap();
        assert_eq!(s.expose().len(), MAX_SECRET_FILE);
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, "\n").unwrap();
        let e = read_secret_text(
            &SecretSource::File(p.clone()),
            "SMB password",
            "password_file",
        )
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "the SMB password from file {} is empty; write the secret there",
                p.display()
            )
        );
    }
}
