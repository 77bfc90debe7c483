//! `smb://[domain;]user@host[:port]/share/path`: SMB2/3 with the pure-Rust `smb` crate, a
//! userspace client (no kernel mount, no CAP_SYS_ADMIN; a dead server gives a timeout).
//!
//! - The crate is async (tokio). The runtime stays inside this module: every target owns a
//!   current-thread runtime, and the blocking [`Target`]/[`Upload`]/`Read` calls run each
//!   request to completion on it with a timeout. Dropping any SMB handle happens inside that
//!   runtime, because the crate closes handles from a spawned task.
//! - Connecting: the self-target guard resolves the host and vets every address
//!   ([`guard::connect_checked`]); the TCP connection it returns (peer checked again) is
//!   handed to the crate as its transport, so the crate never resolves or dials by itself.
//! - Authentication: NTLM with the password from `password_file`/`password_env` (never in
//!   argv or a log). Any character works; it is passed through as is.
//! - SMB3 encryption is on when the server supports it (the crate's `Allowed` mode: the
//!   session is encrypted when the server sets `SMB2_SESSION_FLAG_ENCRYPT_DATA` or the share
//!   requires it, which Samba does with `server smb encrypt = desired`).
//! - Uploads: CREATE with disposition `Create` (fails if the name exists) and read, write and
//!   delete access only, writes, FLUSH, then a rename on the open handle with
//!   `ReplaceIfExists = false` to the final name: a final name is never overwritten. A
//!   dropped upload sets delete-on-close on its handle.
//! - NT status codes become [`TargetError`]s: `STATUS_DISK_FULL`/`STATUS_QUOTA_EXCEEDED`
//!   → the target is full, `STATUS_LOGON_FAILURE` and friends → wrong credentials,
//!   `STATUS_ACCESS_DENIED` → permission, a timeout or a lost connection → temporary.

use std::future::Future;
use std::io::{self, BufReader, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use smb::transport::{SmbTransport, SmbTransportRead, SmbTransportWrite, TransportError};
use smb::{
    Connection, ConnectionConfig, CreateDisposition, CreateOptions, Directory, FileAccessMask,
    FileAttributes, FileCreateArgs, FileDirectoryInformation, FileDispositionInformation,
    FileFsFullSizeInformation, FileRenameInformation, Guid, Resource, Session, Tree, UncPath,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{temp_name, Entry, Retry, Target, TargetError, TargetSpec, TargetUrl, Upload};
use crate::guard::{self, SelfIdentity};

/// Bytes per SMB2 WRITE/READ request (clamped to what the server negotiated).
const CHUNK: usize = 1 << 20;
/// How long closing a session may take when the target is dropped.
const CLOSE_SECS: u64 = 3;

// NT status codes (MS-ERREF 2.3.1) that change what the operator must do.
const STATUS_ACCESS_DENIED: u32 = 0xC000_0022;
const STATUS_OBJECT_NAME_NOT_FOUND: u32 = 0xC000_0034;
const STATUS_OBJECT_NAME_COLLISION: u32 = 0xC000_0035;
const STATUS_OBJECT_PATH_NOT_FOUND: u32 = 0xC000_003A;
const STATUS_QUOTA_EXCEEDED: u32 = 0xC000_0044;
const STATUS_LOGON_FAILURE: u32 = 0xC000_006D;
const STATUS_ACCOUNT_RESTRICTION: u32 = 0xC000_006E;
const STATUS_PASSWORD_EXPIRED: u32 = 0xC000_0071;
const STATUS_ACCOUNT_DISABLED: u32 = 0xC000_0072;
const STATUS_DISK_FULL: u32 = 0xC000_007F;
const STATUS_IO_TIMEOUT: u32 = 0xC000_00B5;
const STATUS_NETWORK_NAME_DELETED: u32 = 0xC000_00C9;
const STATUS_BAD_NETWORK_NAME: u32 = 0xC000_00CC;
const STATUS_USER_SESSION_DELETED: u32 = 0xC000_0203;
const STATUS_ACCOUNT_LOCKED_OUT: u32 = 0xC000_0234;
const STATUS_NETWORK_SESSION_EXPIRED: u32 = 0xC000_035C;

/// The NT status inside an error of the crate, also when the crate flattened it into the
/// text of an `io::Error` (its read, write and flush calls do).
fn nt_status(e: &smb::Error) -> Option<u32> {
    match e {
        smb::Error::ReceivedErrorMessage(s, _) | smb::Error::UnexpectedMessageStatus(s) => Some(*s),
        other => status_in_text(&other.to_string()),
    }
}

/// Parses the code out of `status: Name (0xc000006d).` or `status: 0xc000007f.`, as the
/// crate prints a known or an unknown NT status.
fn status_in_text(text: &str) -> Option<u32> {
    let (_, rest) = text.rsplit_once("status: ")?;
    let (_, hex) = rest.split_once("0x")?;
    let end = hex
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(hex.len());
    u32::from_str_radix(&hex[..end], 16).ok()
}

/// The `STATUS_...` name of the codes handled here, for messages.
fn status_name(s: u32) -> String {
    let name = match s {
        STATUS_ACCESS_DENIED => "STATUS_ACCESS_DENIED",
        STATUS_OBJECT_NAME_NOT_FOUND => "STATUS_OBJECT_NAME_NOT_FOUND",
        STATUS_OBJECT_NAME_COLLISION => "STATUS_OBJECT_NAME_COLLISION",
        STATUS_OBJECT_PATH_NOT_FOUND => "STATUS_OBJECT_PATH_NOT_FOUND",
        STATUS_QUOTA_EXCEEDED => "STATUS_QUOTA_EXCEEDED",
        STATUS_LOGON_FAILURE => "STATUS_LOGON_FAILURE",
        STATUS_ACCOUNT_RESTRICTION => "STATUS_ACCOUNT_RESTRICTION",
        STATUS_PASSWORD_EXPIRED => "STATUS_PASSWORD_EXPIRED",
        STATUS_ACCOUNT_DISABLED => "STATUS_ACCOUNT_DISABLED",
        STATUS_DISK_FULL => "STATUS_DISK_FULL",
        STATUS_IO_TIMEOUT => "STATUS_IO_TIMEOUT",
        STATUS_NETWORK_NAME_DELETED => "STATUS_NETWORK_NAME_DELETED",
        STATUS_BAD_NETWORK_NAME => "STATUS_BAD_NETWORK_NAME",
        STATUS_USER_SESSION_DELETED => "STATUS_USER_SESSION_DELETED",
        STATUS_ACCOUNT_LOCKED_OUT => "STATUS_ACCOUNT_LOCKED_OUT",
        STATUS_NETWORK_SESSION_EXPIRED => "STATUS_NETWORK_SESSION_EXPIRED",
        other => return format!("NT status {other:#010x}"),
    };
    name.to_string()
}

/// Whether the crate says the connection is gone.
fn connection_lost(e: &smb::Error) -> bool {
    match e {
        smb::Error::ConnectionStopped => true,
        smb::Error::TransportError(TransportError::NotConnected | TransportError::IoError(_)) => {
            true
        }
        smb::Error::IoError(io) => {
            let t = io.to_string();
            t.contains("Client connection is stopped") || t.contains("Not connected")
        }
        smb::Error::MessageProcessingError(_) => true,
        _ => false,
    }
}

/// Maps an error of the crate during `op` on `url`.
fn map_err(url: &str, op: &str, e: &smb::Error) -> TargetError {
    let target = url.to_string();
    if let Some(s) = nt_status(e) {
        let detail = format!("{op}: {}", status_name(s));
        return match s {
            STATUS_DISK_FULL | STATUS_QUOTA_EXCEEDED => TargetError::NoSpace { target, detail },
            STATUS_ACCESS_DENIED => TargetError::Permission {
                target,
                op: op.to_string(),
                detail: status_name(s),
            },
            STATUS_OBJECT_NAME_NOT_FOUND | STATUS_OBJECT_PATH_NOT_FOUND => TargetError::NotFound {
                target,
                what: op.to_string(),
            },
            STATUS_BAD_NETWORK_NAME => TargetError::NotFound {
                target,
                what: format!("{op}: the share (STATUS_BAD_NETWORK_NAME)"),
            },
            STATUS_OBJECT_NAME_COLLISION => TargetError::Exists {
                target,
                name: op.to_string(),
            },
            STATUS_IO_TIMEOUT => TargetError::Timeout {
                target,
                op: op.to_string(),
                secs: 0,
            },
            STATUS_NETWORK_NAME_DELETED
            | STATUS_USER_SESSION_DELETED
            | STATUS_NETWORK_SESSION_EXPIRED => TargetError::Unreachable {
                target,
                detail: format!("{op}: the server dropped the session ({})", status_name(s)),
            },
            _ => TargetError::Io {
                target,
                op: op.to_string(),
                detail: status_name(s),
                retry: Retry::Permanent,
            },
        };
    }
    match e {
        smb::Error::OperationTimeout(_, d)
        | smb::Error::TransportError(TransportError::Timeout(d)) => TargetError::Timeout {
            target,
            op: op.to_string(),
            secs: d.as_secs(),
        },
        e if connection_lost(e) => TargetError::Unreachable {
            target,
            detail: format!("{op}: connection lost ({e})"),
        },
        e => TargetError::Io {
            target,
            op: op.to_string(),
            detail: e.to_string(),
            retry: Retry::Temporary,
        },
    }
}

/// Maps an `io::Error` of the crate's file calls (which carry the crate error as text).
fn map_io(url: &str, op: &str, e: io::Error) -> TargetError {
    map_err(url, op, &smb::Error::IoError(e))
}

/// The TCP connection the guard made and vetted, as the crate's transport.
struct GuardedTcp {
    reader: Option<OwnedReadHalf>,
    writer: Option<OwnedWriteHalf>,
    peer: SocketAddr,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn lost(e: io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected => TransportError::NotConnected,
        _ => TransportError::IoError(e),
    }
}

impl SmbTransport for GuardedTcp {
    fn connect<'a>(
        &'a mut self,
        _server_name: &'a str,
        _address: SocketAddr,
    ) -> BoxFuture<'a, smb::transport::error::Result<()>> {
        // Connected by the guard before the crate saw it.
        Box::pin(async { Err(TransportError::AlreadyConnected) })
    }

    fn default_port(&self) -> u16 {
        445
    }

    fn split(
        self: Box<Self>,
    ) -> smb::transport::error::Result<(Box<dyn SmbTransportRead>, Box<dyn SmbTransportWrite>)>
    {
        let peer = self.peer;
        Ok((
            Box::new(GuardedTcp {
                reader: self.reader,
                writer: None,
                peer,
            }),
            Box::new(GuardedTcp {
                reader: None,
                writer: self.writer,
                peer,
            }),
        ))
    }

    fn remote_address(&self) -> smb::transport::error::Result<SocketAddr> {
        Ok(self.peer)
    }
}

impl SmbTransportRead for GuardedTcp {
    fn receive_exact<'a>(
        &'a mut self,
        out: &'a mut [u8],
    ) -> BoxFuture<'a, smb::transport::error::Result<()>> {
        Box::pin(async move {
            let r = self.reader.as_mut().ok_or(TransportError::NotConnected)?;
            r.read_exact(out).await.map(|_| ()).map_err(lost)
        })
    }
}

impl SmbTransportWrite for GuardedTcp {
    fn send_raw<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> BoxFuture<'a, smb::transport::error::Result<()>> {
        Box::pin(async move {
            let w = self.writer.as_mut().ok_or(TransportError::NotConnected)?;
            w.write_all(buf).await.map_err(lost)
        })
    }
}

/// The runtime and the SMB session, shared by a target and its uploads and readers.
struct Inner {
    rt: tokio::runtime::Runtime,
    /// Connection, session and tree; `None` once closed.
    smb: Mutex<Option<(Connection, Session, Arc<Tree>)>>,
    url: String,
    timeout: Duration,
    /// The directory inside the share, with `\` separators and no leading one ("" = root).
    dir: String,
    chunk: usize,
}

impl Inner {
    /// Runs `fut` to completion on the target's runtime, with the network timeout.
    fn run<T>(
        &self,
        op: &str,
        fut: impl Future<Output = Result<T, TargetError>>,
    ) -> Result<T, TargetError> {
        let secs = self.timeout.as_secs();
        // The crate times out each request; this bounds a whole operation.
        let limit = self.timeout.saturating_mul(2) + Duration::from_secs(1);
        // Timers need the runtime in context even before `block_on` polls them.
        let _g = self.rt.enter();
        match self.rt.block_on(tokio::time::timeout(limit, fut)) {
            Ok(r) => r,
            Err(_) => Err(TargetError::Timeout {
                target: self.url.clone(),
                op: op.to_string(),
                secs,
            }),
        }
    }

    fn tree(&self) -> Result<Arc<Tree>, TargetError> {
        self.smb
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, _, t)| t.clone())
            .ok_or_else(|| TargetError::Unreachable {
                target: self.url.clone(),
                detail: "the SMB session is closed".into(),
            })
    }

    /// `name` inside the target directory, as a path in the share.
    fn path(&self, name: &str) -> String {
        if self.dir.is_empty() {
            name.to_string()
        } else {
            format!("{}\\{name}", self.dir)
        }
    }

    /// Opens `path` with `args`.
    fn create(&self, op: &str, path: &str, args: FileCreateArgs) -> Result<Resource, TargetError> {
        let tree = self.tree()?;
        let url = self.url.clone();
        self.run(op, async move {
            tree.create(path, &args)
                .await
                .map_err(|e| map_err(&url, op, &e))
        })
    }

    /// Closes a handle; errors are ignored (a closed connection closes it anyway).
    fn close(&self, r: Resource) {
        let _g = self.rt.enter();
        let _ = self.rt.block_on(tokio::time::timeout(self.timeout, async {
            match &r {
                Resource::File(f) => f.close().await,
                Resource::Directory(d) => d.close().await,
                Resource::Pipe(p) => p.close().await,
            }
        }));
        drop(r);
    }

    /// Marks an open file delete-on-close, then closes it.
    fn delete_open(&self, op: &str, r: Resource) -> Result<(), TargetError> {
        let url = self.url.clone();
        let res = {
            let r = &r;
            self.run(op, async move {
                let h = match r {
                    Resource::File(f) => f.handle(),
                    Resource::Directory(d) => d.handle(),
                    Resource::Pipe(p) => p.handle(),
                };
                h.set_info(FileDispositionInformation::default())
                    .await
                    .map_err(|e| map_err(&url, op, &e))
            })
        };
        self.close(r);
        res
    }

    /// Opens the target directory for listing and file-system queries.
    fn open_dir(&self) -> Result<Arc<Directory>, TargetError> {
        let args = FileCreateArgs {
            disposition: CreateDisposition::Open,
            attributes: FileAttributes::new(),
            options: CreateOptions::new().with_directory_file(true),
            desired_access: FileAccessMask::new()
                .with_file_read_data(true)
                .with_file_read_attributes(true)
                .with_synchronize(true),
        };
        let what = if self.dir.is_empty() {
            "the share root".to_string()
        } else {
            format!("directory {}", self.dir.replace('\\', "/"))
        };
        match self.create(&what, &self.dir, args)? {
            Resource::Directory(d) => Ok(Arc::new(d)),
            other => {
                self.close(other);
                Err(TargetError::Invalid {
                    target: self.url.clone(),
                    why: format!("{what} is not a directory"),
                })
            }
        }
    }

    fn close_dir(&self, d: Arc<Directory>) {
        match Arc::try_unwrap(d) {
            Ok(d) => self.close(Resource::Directory(d)),
            Err(d) => {
                let _g = self.rt.enter();
                drop(d);
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some((conn, session, tree)) = self
            .smb
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _g = self.rt.enter();
            let _ = self.rt.block_on(tokio::time::timeout(
                Duration::from_secs(CLOSE_SECS),
                async {
                    let _ = tree.disconnect().await;
                    let _ = session.logoff().await;
                    let _ = conn.close().await;
                },
            ));
            drop(tree);
            drop(session);
            drop(conn);
        }
    }
}

/// A connected SMB share directory.
pub struct SmbTarget {
    inner: Arc<Inner>,
}

fn parts(spec: &TargetSpec) -> (Option<&str>, &str, &str, u16, &str, &str) {
    let TargetUrl::Smb {
        domain,
        user,
        host,
        port,
        share,
        path,
    } = &spec.url
    else {
        unreachable!("SmbTarget for an smb:// URL");
    };
    (domain.as_deref(), user, host, *port, share, path)
}

impl SmbTarget {
    /// Reads the password, guards and connects, negotiates (SMB3 encryption when the server
    /// supports it), authenticates, connects the share, and checks the directory.
    pub fn connect(spec: &TargetSpec, me: &SelfIdentity) -> Result<SmbTarget, TargetError> {
        let url = spec.url.to_string();
        let (domain, user, host, port, share, path) = parts(spec);
        let password = spec.password()?;
        let timeout = Duration::from_secs(spec.timeout_secs.max(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TargetError::from_io(&url, "starting the SMB client runtime", &e))?;
        let tcp = guard::connect_checked(me, &url, host, port, timeout)?;
        let peer = tcp
            .peer_addr()
            .map_err(|e| TargetError::from_io(&url, "connecting", &e))?;
        me.check_peer(&url, peer)?;
        tcp.set_nonblocking(true)
            .map_err(|e| TargetError::from_io(&url, "connecting", &e))?;
        let tcp = {
            let _g = rt.enter();
            tokio::net::TcpStream::from_std(tcp)
                .map_err(|e| TargetError::from_io(&url, "connecting", &e))?
        };
        tcp.set_nodelay(true).ok();
        let (r, w) = tcp.into_split();
        let transport = Box::new(GuardedTcp {
            reader: Some(r),
            writer: Some(w),
            peer,
        });
        let config = ConnectionConfig {
            port: Some(port),
            timeout: Some(timeout),
            encryption_mode: smb::connection::config::EncryptionMode::Allowed,
            compression_enabled: false,
            ..Default::default()
        };
        let username = sspi::Username::new(user, domain).map_err(|e| TargetError::Invalid {
            target: url.clone(),
            why: format!("user name {user:?}: {e}"),
        })?;
        // The only copy handed on goes into sspi's zeroizing `Secret`; ours is zeroized here.
        let identity = sspi::AuthIdentity {
            username,
            password: password.expose().to_string().into(),
        };
        drop(password);
        let unc =
            UncPath::from_str(&format!(r"\\{host}\{share}")).map_err(|e| TargetError::Invalid {
                target: url.clone(),
                why: format!("share {share:?}: {e}"),
            })?;
        let secs = timeout.as_secs();
        let limit = timeout.saturating_mul(3);
        let who = match domain {
            Some(d) => format!("{d}\\{user}"),
            None => user.to_string(),
        };
        let rt_guard = rt.enter();
        let step = rt.block_on(tokio::time::timeout(limit, async {
            let conn = Connection::from_transport(transport, host, Guid::generate(), config)
                .await
                .map_err(|e| map_err(&url, "SMB negotiation", &e))?;
            let session = match conn.authenticate(identity).await {
                Ok(s) => s,
                Err(e) => {
                    let mapped = map_err(&url, "SMB session setup", &e);
                    let _ = conn.close().await;
                    return Err(match mapped {
                        TargetError::Io { .. }
                        | TargetError::Permission { .. }
                        | TargetError::NotFound { .. } => TargetError::Auth {
                            target: url.clone(),
                            user: who.clone(),
                            detail: nt_status(&e)
                                .map(status_name)
                                .unwrap_or_else(|| e.to_string()),
                            hint: credential_hint(spec),
                        },
                        other => other,
                    });
                }
            };
            let tree = match session.tree_connect(&unc).await {
                Ok(t) => t,
                Err(e) => {
                    let _ = session.logoff().await;
                    let _ = conn.close().await;
                    return Err(match nt_status(&e) {
                        Some(STATUS_BAD_NETWORK_NAME) => TargetError::NotFound {
                            target: url.clone(),
                            what: format!("share {share:?} (STATUS_BAD_NETWORK_NAME)"),
                        },
                        _ => map_err(&url, &format!("connecting share {share}"), &e),
                    });
                }
            };
            Ok((conn, session, tree))
        }));
        let (conn, session, tree) = match step {
            Ok(r) => r?,
            Err(_) => {
                return Err(TargetError::Timeout {
                    target: url,
                    op: "SMB connection setup".into(),
                    secs,
                })
            }
        };
        drop(rt_guard);
        let chunk = conn
            .conn_info()
            .map(|i| {
                let n = &i.negotiation;
                CHUNK
                    .min(n.max_write_size as usize)
                    .min(n.max_read_size as usize)
            })
            .unwrap_or(64 << 10)
            .max(4096);
        let dir = path
            .split('/')
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("\\");
        let inner = Arc::new(Inner {
            rt,
            smb: Mutex::new(Some((conn, session, Arc::new(tree)))),
            url,
            timeout,
            dir,
            chunk,
        });
        let d = inner.open_dir()?;
        inner.close_dir(d);
        Ok(SmbTarget { inner })
    }
}

fn credential_hint(spec: &TargetSpec) -> String {
    let source = match (&spec.password_file, &spec.password_env) {
        (Some(f), _) => format!("the password file {}", f.display()),
        (None, Some(v)) => format!("${v}"),
        (None, None) => "the password".to_string(),
    };
    format!(
        "wrong user, domain or password; check the URL and {source} (the password is used as is: any character is allowed, one trailing newline is dropped). Retrying will not help"
    )
}

struct SmbUpload {
    inner: Arc<Inner>,
    file: Option<Resource>,
    temp: String,
    buf: Vec<u8>,
    pos: u64,
    /// The first failure: later writes repeat it instead of writing past a hole.
    failed: Option<String>,
}

impl SmbUpload {
    fn file(&self) -> &smb::File {
        match self.file.as_ref() {
            Some(Resource::File(f)) => f,
            _ => unreachable!("an upload holds a file until commit or drop"),
        }
    }

    /// Writes the buffer out at `pos`.
    fn send(&mut self) -> Result<(), TargetError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let url = self.inner.url.clone();
        let inner = self.inner.clone();
        let file = self.file();
        let buf = &self.buf;
        let pos = self.pos;
        inner.run("writing the archive", async move {
            let mut done = 0usize;
            while done < buf.len() {
                let n = file
                    .write_block(&buf[done..], pos + done as u64, None)
                    .await
                    .map_err(|e| map_io(&url, "writing the archive", e))?;
                if n == 0 {
                    return Err(TargetError::Io {
                        target: url.clone(),
                        op: "writing the archive".into(),
                        detail: "the server accepted 0 bytes".into(),
                        retry: Retry::Temporary,
                    });
                }
                done += n;
            }
            Ok(())
        })?;
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn fail(&mut self, e: TargetError) -> io::Error {
        self.failed = Some(e.to_string());
        e.into_io()
    }
}

impl Write for SmbUpload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(f) = &self.failed {
            return Err(io::Error::other(format!("the upload already failed: {f}")));
        }
        let room = self.inner.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.inner.chunk {
            if let Err(e) = self.send() {
                return Err(self.fail(e));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(f) = &self.failed {
            return Err(io::Error::other(format!("the upload already failed: {f}")));
        }
        self.send().map_err(|e| self.fail(e))
    }
}

impl Upload for SmbUpload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        super::check_plain(&self.inner.url, name)?;
        if let Some(f) = &self.failed {
            return Err(TargetError::Io {
                target: self.inner.url.clone(),
                op: format!("publishing {name}"),
                detail: format!("the upload had failed: {f}"),
                retry: Retry::Temporary,
            });
        }
        self.send()?;
        let url = self.inner.url.clone();
        let inner = self.inner.clone();
        let final_path = inner.path(name);
        let file = self.file();
        let r = inner.run(&format!("publishing {name}"), async {
            file.flush()
                .await
                .map_err(|e| map_io(&url, "flushing the upload", e))?;
            file.set_info(FileRenameInformation {
                replace_if_exists: false.into(),
                root_directory: 0,
                file_name: final_path.as_str().into(),
            })
            .await
            .map_err(|e| match nt_status(&e) {
                Some(STATUS_OBJECT_NAME_COLLISION) => TargetError::Exists {
                    target: url.clone(),
                    name: name.to_string(),
                },
                _ => map_err(&url, &format!("publishing {name}"), &e),
            })
        });
        let file = self.file.take().expect("open until commit");
        match r {
            Ok(()) => {
                // The rename is done; a failing close loses nothing.
                inner.close(file);
                Ok(())
            }
            Err(e) => {
                let _ = inner.delete_open("removing the failed upload", file);
                Err(e)
            }
        }
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }
}

impl Drop for SmbUpload {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = self.inner.delete_open("removing the aborted upload", f);
        }
    }
}

struct SmbReader {
    inner: Arc<Inner>,
    file: Option<Resource>,
    pos: u64,
}

impl Read for SmbReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(Resource::File(file)) = self.file.as_ref() else {
            return Ok(0);
        };
        let want = buf.len().min(self.inner.chunk);
        let url = self.inner.url.clone();
        let pos = self.pos;
        let out = &mut buf[..want];
        let n = self
            .inner
            .run("reading the archive", async move {
                file.read_block(out, pos, None, false)
                    .await
                    .map_err(|e| map_io(&url, "reading the archive", e))
            })
            .map_err(TargetError::into_io)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Drop for SmbReader {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            self.inner.close(f);
        }
    }
}

impl Target for SmbTarget {
    fn url(&self) -> String {
        self.inner.url.clone()
    }

    fn begin(&mut self, appliance: &str) -> Result<Box<dyn Upload>, TargetError> {
        let temp = temp_name(appliance);
        let args = FileCreateArgs {
            // Fails with STATUS_OBJECT_NAME_COLLISION if the name exists.
            disposition: CreateDisposition::Create,
            attributes: FileAttributes::new(),
            options: CreateOptions::new().with_non_directory_file(true),
            // Read and write (and delete, for the rename and the abort), never GENERIC_ALL.
            desired_access: FileAccessMask::new()
                .with_generic_read(true)
                .with_generic_write(true)
                .with_delete(true),
        };
        let file = self
            .inner
            .create("creating the upload file", &self.inner.path(&temp), args)?;
        if !matches!(file, Resource::File(_)) {
            self.inner.close(file);
            return Err(TargetError::Invalid {
                target: self.inner.url.clone(),
                why: format!("{temp} is not a file"),
            });
        }
        Ok(Box::new(SmbUpload {
            inner: self.inner.clone(),
            file: Some(file),
            temp,
            buf: Vec::with_capacity(self.inner.chunk),
            pos: 0,
            failed: None,
        }))
    }

    fn list(&mut self) -> Result<Vec<Entry>, TargetError> {
        let dir = self.inner.open_dir()?;
        let url = self.inner.url.clone();
        let d = dir.clone();
        let r = self.inner.run("listing", async move {
            let mut out = Vec::new();
            let mut stream = Directory::query::<FileDirectoryInformation>(&d, "*")
                .await
                .map_err(|e| map_err(&url, "listing", &e))?;
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| map_err(&url, "listing", &e))?;
                if item.file_attributes.directory() {
                    continue;
                }
                out.push(Entry {
                    name: item.file_name.to_string(),
                    size: Some(item.end_of_file),
                });
            }
            Ok(out)
        });
        self.inner.close_dir(dir);
        let mut out = r?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn Read + Send>, TargetError> {
        super::check_plain(&self.inner.url, name)?;
        let args = FileCreateArgs::make_open_existing(
            FileAccessMask::new()
                .with_generic_read(true)
                .with_synchronize(true),
        );
        let file = self
            .inner
            .create(&format!("archive {name}"), &self.inner.path(name), args)?;
        if !matches!(file, Resource::File(_)) {
            self.inner.close(file);
            return Err(TargetError::Invalid {
                target: self.inner.url.clone(),
                why: format!("{name} is not a file"),
            });
        }
        Ok(Box::new(BufReader::with_capacity(
            self.inner.chunk,
            SmbReader {
                inner: self.inner.clone(),
                file: Some(file),
                pos: 0,
            },
        )))
    }

    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        super::check_plain(&self.inner.url, name)?;
        let op = format!("deleting {name}");
        let args = FileCreateArgs {
            disposition: CreateDisposition::Open,
            attributes: FileAttributes::new(),
            options: CreateOptions::new().with_non_directory_file(true),
            desired_access: FileAccessMask::new()
                .with_delete(true)
                .with_file_read_attributes(true),
        };
        let file = self.inner.create(&op, &self.inner.path(name), args)?;
        self.inner.delete_open(&op, file)
    }

    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        let dir = self.inner.open_dir()?;
        let url = self.inner.url.clone();
        let d = dir.clone();
        let r = self.inner.run("querying the free space", async move {
            d.query_fs_info::<FileFsFullSizeInformation>()
                .await
                .map_err(|e| map_err(&url, "querying the free space", &e))
        });
        self.inner.close_dir(dir);
        let info = r?;
        let unit = u64::from(info.sectors_per_allocation_unit) * u64::from(info.bytes_per_sector);
        Ok(Some(
            info.caller_available_allocation_units.saturating_mul(unit),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_text() {
        assert_eq!(
            status_in_text("IO Error: Server returned an error message with status: 0xc000007f."),
            Some(STATUS_DISK_FULL)
        );
        assert_eq!(
            status_in_text(
                "Server returned an error message with status: Logon Failure (0xc000006d)."
            ),
            Some(STATUS_LOGON_FAILURE)
        );
        assert_eq!(status_in_text("Client connection is stopped"), None);
    }

    #[test]
    fn statuses_map_to_what_to_do() {
        let e = smb::Error::UnexpectedMessageStatus(STATUS_DISK_FULL);
        let t = map_err("smb://u@h/s", "writing", &e);
        assert!(t.to_string().contains("the target is full"), "{t}");
        assert_eq!(t.retry(), Retry::Permanent);
        let e = smb::Error::IoError(io::Error::other(
            "Server returned an error message with status: 0xc000007f.",
        ));
        assert!(matches!(map_err("u", "w", &e), TargetError::NoSpace { .. }));
        let e = smb::Error::UnexpectedMessageStatus(STATUS_ACCESS_DENIED);
        assert!(matches!(
            map_err("u", "w", &e),
            TargetError::Permission { .. }
        ));
        let e = smb::Error::UnexpectedMessageStatus(STATUS_OBJECT_NAME_COLLISION);
        assert!(matches!(map_err("u", "w", &e), TargetError::Exists { .. }));
        let e = smb::Error::ConnectionStopped;
        let t = map_err("u", "w", &e);
        assert!(matches!(t, TargetError::Unreachable { .. }));
        assert_eq!(t.retry(), Retry::Temporary);
        let e = smb::Error::OperationTimeout(
            smb::error::TimedOutTask::ReceiveNextMessage,
            Duration::from_secs(7),
        );
        let t = map_err("u", "w", &e);
        assert!(t.to_string().contains("timed out after 7s"), "{t}");
        assert_eq!(t.retry(), Retry::Temporary);
    }
}
