//! `ssh://user@host[:port]/path`: SFTP over SSH with libssh2 (`ssh2` crate), against a stock
//! OpenSSH server.
//!
//! - Authentication: the appliance's own key pair ([`ensure_key_pair`] creates it), no
//!   passwords.
//! - Host key pinned in a known_hosts file: an unknown key fails with its fingerprint until
//!   the operator runs `offbox target accept-host-key ... --fingerprint FP` ([`pin`]); a
//!   changed key fails loudly. A server presenting this appliance's own host key is refused
//!   by the guard.
//! - Uploads: exclusive create of a temporary name, `fsync@openssh.com`, close, then
//!   rename to a final name that does not exist yet (OpenSSH's SFTP v3 rename never
//!   overwrites).

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ssh2::{ErrorCode, FileStat, OpenFlags, OpenType, Session, Sftp};

use super::{temp_name, Entry, Retry, Target, TargetError, TargetSpec, TargetUrl, Upload};
use crate::guard::{self, SelfIdentity};

// SFTP status codes (draft-ietf-secsh-filexfer-02 and later).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_FILE_ALREADY_EXISTS: i32 = 11;
const FX_NO_SPACE: i32 = 14;
const FX_QUOTA_EXCEEDED: i32 = 15;
const FX_NO_SUCH_PATH: i32 = 10;
// libssh2 session errors.
const ERR_TIMEOUT: i32 = -9;
const ERR_SOCKET_SEND: i32 = -7;
const ERR_SOCKET_DISCONNECT: i32 = -13;
const ERR_SOCKET_RECV: i32 = -43;

/// A connected SFTP session in the target directory.
pub struct SshTarget {
    sftp: Arc<Sftp>,
    _session: Session,
    dir: PathBuf,
    url: String,
}

/// Maps a libssh2 error of `op`.
fn map_err(url: &str, op: &str, e: &ssh2::Error) -> TargetError {
    let target = url.to_string();
    let detail = e.message().to_string();
    match e.code() {
        ErrorCode::SFTP(FX_NO_SUCH_FILE) | ErrorCode::SFTP(FX_NO_SUCH_PATH) => {
            TargetError::NotFound {
                target,
                what: op.to_string(),
            }
        }
        ErrorCode::SFTP(FX_PERMISSION_DENIED) => TargetError::Permission {
            target,
            op: op.to_string(),
            detail,
        },
        ErrorCode::SFTP(FX_FILE_ALREADY_EXISTS) => TargetError::Exists {
            target,
            name: op.to_string(),
        },
        ErrorCode::SFTP(FX_NO_SPACE) | ErrorCode::SFTP(FX_QUOTA_EXCEEDED) => {
            TargetError::NoSpace { target, detail }
        }
        ErrorCode::Session(ERR_TIMEOUT) => TargetError::Timeout {
            target,
            op: op.to_string(),
            secs: 0,
        },
        ErrorCode::Session(ERR_SOCKET_SEND | ERR_SOCKET_DISCONNECT | ERR_SOCKET_RECV) => {
            TargetError::Unreachable {
                target,
                detail: format!("{op}: connection lost ({detail})"),
            }
        }
        _ => TargetError::Io {
            target,
            op: op.to_string(),
            detail: format!("{detail} ({})", e.code()),
            retry: Retry::Temporary,
        },
    }
}

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

/// Looks `blob` up for `pattern` in known_hosts text (plain, unhashed entries).
pub fn lookup(known_hosts: &str, pattern: &str, blob: &[u8]) -> Pinned {
    let mut seen = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(hosts), Some(_kt), Some(b64)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if !hosts.split(',').any(|h| h.eq_ignore_ascii_case(pattern)) {
            continue;
        }
        seen = true;
        if data_encoding::BASE64.decode(b64.as_bytes()).ok().as_deref() == Some(blob) {
            return Pinned::Match;
        }
    }
    if seen {
        Pinned::Mismatch
    } else {
        Pinned::Unknown
    }
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
    pub fn key_type(&self) -> String {
        blob_key_type(&self.blob)
    }
}

fn parts(spec: &TargetSpec) -> (&str, &str, u16, &str) {
    let TargetUrl::Ssh {
        user,
        host,
        port,
        path,
    } = &spec.url
    else {
        unreachable!("SshTarget for an ssh:// URL");
    };
    (user, host, *port, path)
}

/// Transport ciphers in order of preference (libssh2 ignores the ones it lacks).
const CIPHERS: &str = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr,chacha20-poly1305@openssh.com";

/// Connects (guarded), handshakes, and checks the host key against this appliance's own.
fn handshake(spec: &TargetSpec, me: &SelfIdentity) -> Result<(Session, HostKey), TargetError> {
    let url = spec.url.to_string();
    let (_, host, port, _) = parts(spec);
    let timeout = Duration::from_secs(spec.timeout_secs);
    let tcp: TcpStream = guard::connect_checked(me, &url, host, port, timeout)?;
    let mut sess = Session::new().map_err(|e| map_err(&url, "starting libssh2", &e))?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout((spec.timeout_secs * 1000).min(u32::MAX as u64) as u32);
    // Prefer ciphers with hardware support (AES-NI): the archive is already encrypted and
    // authenticated, so the transport cipher only has to be fast and sound.
    for (kind, prefs) in [
        (ssh2::MethodType::CryptCs, CIPHERS),
        (ssh2::MethodType::CryptSc, CIPHERS),
    ] {
        let _ = sess.method_pref(kind, prefs);
    }
    sess.handshake()
        .map_err(|e| map_err(&url, "SSH handshake", &e))?;
    let blob = sess
        .host_key()
        .map(|(b, _)| b.to_vec())
        .ok_or_else(|| TargetError::Io {
            target: url.clone(),
            op: "SSH handshake".into(),
            detail: "no host key".into(),
            retry: Retry::Temporary,
        })?;
    me.check_host_key(&url, &blob)?;
    Ok((
        sess,
        HostKey {
            pattern: host_pattern(host, port),
            blob,
        },
    ))
}

/// Connects and returns the server's host key without authenticating (for
/// `accept-host-key`).
pub fn probe_host_key(spec: &TargetSpec, me: &SelfIdentity) -> Result<HostKey, TargetError> {
    handshake(spec, me).map(|(_, k)| k)
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

fn pub_path(identity: &Path) -> PathBuf {
    let mut p = identity.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

impl SshTarget {
    /// Guard, connect, guard the peer, check the pinned host key, authenticate with the
    /// appliance key, open SFTP, and check that the directory exists.
    pub fn connect(spec: &TargetSpec, me: &SelfIdentity) -> Result<SshTarget, TargetError> {
        let url = spec.url.to_string();
        let (user, _, _, path) = parts(spec);
        let (sess, key) = handshake(spec, me)?;
        let kh = &spec.known_hosts;
        let text = std::fs::read_to_string(kh).unwrap_or_default();
        match lookup(&text, &key.pattern, &key.blob) {
            Pinned::Match => {}
            Pinned::Unknown => {
                let kt = key.key_type();
                return Err(TargetError::HostKeyUnknown {
                    target: url,
                    host: key.pattern.clone(),
                    fingerprint: key.fingerprint(),
                    short: kt
                        .trim_start_matches("ssh-")
                        .split('-')
                        .next()
                        .unwrap_or("*")
                        .to_string(),
                    key_type: kt,
                });
            }
            Pinned::Mismatch => {
                return Err(TargetError::HostKeyMismatch {
                    target: url,
                    host: key.pattern.clone(),
                    fingerprint: key.fingerprint(),
                    key_type: key.key_type(),
                    known_hosts: kh.display().to_string(),
                })
            }
        }
        let id = &spec.ssh_identity;
        if !id.exists() {
            return Err(TargetError::Credentials {
                target: url,
                detail: format!(
                    "no SSH key at {}; run `offbox target ssh-key` and add the printed key to ~{user}/.ssh/authorized_keys on the server",
                    id.display()
                ),
            });
        }
        let pubp = pub_path(id);
        let pubkey = pubp.exists().then_some(pubp.as_path());
        if let Err(e) = sess.userauth_pubkey_file(user, pubkey, id, None) {
            return Err(TargetError::Auth {
                target: url,
                user: user.to_string(),
                detail: e.message().to_string(),
                hint: format!(
                    "add the output of `offbox target ssh-key` ({}) to ~{user}/.ssh/authorized_keys on the server",
                    pubp.display()
                ),
            });
        }
        let sftp = sess
            .sftp()
            .map_err(|e| map_err(&url, "starting SFTP (is the sftp subsystem enabled?)", &e))?;
        let dir = PathBuf::from(path);
        let st = sftp
            .stat(&dir)
            .map_err(|e| map_err(&url, &format!("directory {}", dir.display()), &e))?;
        if !st.is_dir() {
            return Err(TargetError::Invalid {
                target: url,
                why: format!("{} is not a directory", dir.display()),
            });
        }
        Ok(SshTarget {
            sftp: Arc::new(sftp),
            _session: sess,
            dir,
            url,
        })
    }
}

struct SshUpload {
    file: Option<ssh2::File>,
    sftp: Arc<Sftp>,
    dir: PathBuf,
    temp: String,
    url: String,
}

impl Write for SshUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().expect("open until commit");
        let r = f.write(buf);
        r.map_err(|e| {
            // OpenSSH reports ENOSPC and EDQUOT as a plain "failure": ask statvfs.
            let free = self
                .file
                .as_mut()
                .and_then(|f| f.statvfs().ok())
                .map(|v| v.f_bavail.saturating_mul(v.f_frsize));
            if let Some(free) = free {
                if free < (buf.len() as u64).max(1 << 20) {
                    return TargetError::NoSpace {
                        target: self.url.clone(),
                        detail: format!("SFTP write failed ({e}) with {free} bytes free"),
                    }
                    .into_io();
                }
            }
            let e2 = io::Error::new(e.kind(), format!("SFTP write: {e}"));
            match e.kind() {
                io::ErrorKind::TimedOut => TargetError::Timeout {
                    target: self.url.clone(),
                    op: "writing".into(),
                    secs: 0,
                }
                .into_io(),
                _ => TargetError::from_io(&self.url, "writing the archive", &e2).into_io(),
            }
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl Upload for SshUpload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        let mut file = self.file.take().expect("open until commit");
        let r = self.publish(&mut file, name);
        drop(file);
        let r = r.and_then(|()| {
            let fin = self.dir.join(name);
            if self.sftp.lstat(&fin).is_ok() {
                return Err(TargetError::Exists {
                    target: self.url.clone(),
                    name: name.into(),
                });
            }
            self.sftp
                .rename(&self.dir.join(&self.temp), &fin, None)
                .map_err(|e| map_err(&self.url, &format!("publishing {name}"), &e))
        });
        if r.is_err() {
            let _ = self.sftp.unlink(&self.dir.join(&self.temp));
        }
        r
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }
}

impl SshUpload {
    fn publish(&self, file: &mut ssh2::File, _name: &str) -> Result<(), TargetError> {
        file.flush()
            .map_err(|e| TargetError::from_io(&self.url, "flushing the upload", &e))?;
        match file.fsync() {
            Ok(()) => Ok(()),
            // Servers without fsync@openssh.com: the close below still flushes.
            Err(e) if matches!(e.code(), ErrorCode::SFTP(8)) => Ok(()),
            Err(e) => Err(map_err(&self.url, "syncing the upload", &e)),
        }
    }
}

impl Drop for SshUpload {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            drop(f);
            let _ = self.sftp.unlink(&self.dir.join(&self.temp));
        }
    }
}

struct SshReader {
    file: ssh2::File,
    url: String,
}

impl Read for SshReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file
            .read(buf)
            .map_err(|e| TargetError::from_io(&self.url, "reading the archive", &e).into_io())
    }
}

impl Target for SshTarget {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn begin(&mut self, appliance: &str) -> Result<Box<dyn Upload>, TargetError> {
        let temp = temp_name(appliance);
        let file = self
            .sftp
            .open_mode(
                self.dir.join(&temp),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                0o600,
                OpenType::File,
            )
            .map_err(|e| map_err(&self.url, "creating the upload file", &e))?;
        Ok(Box::new(SshUpload {
            file: Some(file),
            sftp: self.sftp.clone(),
            dir: self.dir.clone(),
            temp,
            url: self.url.clone(),
        }))
    }

    fn list(&mut self) -> Result<Vec<Entry>, TargetError> {
        let items: Vec<(PathBuf, FileStat)> = self
            .sftp
            .readdir(&self.dir)
            .map_err(|e| map_err(&self.url, "listing", &e))?;
        let mut out: Vec<Entry> = items
            .into_iter()
            .filter(|(_, st)| st.is_file())
            .filter_map(|(p, st)| {
                Some(Entry {
                    name: p.file_name()?.to_string_lossy().into_owned(),
                    size: st.size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn Read + Send>, TargetError> {
        super::check_plain(&self.url, name)?;
        let file = self
            .sftp
            .open(self.dir.join(name))
            .map_err(|e| map_err(&self.url, &format!("archive {name}"), &e))?;
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            SshReader {
                file,
                url: self.url.clone(),
            },
        )))
    }

    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        super::check_plain(&self.url, name)?;
        self.sftp
            .unlink(&self.dir.join(name))
            .map_err(|e| map_err(&self.url, &format!("deleting {name}"), &e))
    }

    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        // libssh2 has only fstatvfs@openssh.com, on a file handle: use a scratch file.
        let scratch = self.dir.join(temp_name("statvfs"));
        let Ok(mut f) = self.sftp.open_mode(
            &scratch,
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
            0o600,
            OpenType::File,
        ) else {
            return Ok(None);
        };
        let v = f.statvfs();
        drop(f);
        let _ = self.sftp.unlink(&scratch);
        Ok(v.ok().map(|v| v.f_bavail.saturating_mul(v.f_frsize)))
    }
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
