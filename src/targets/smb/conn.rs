//! The SMB connection: dialled through the guard ([`net::connect_async`]), negotiated,
//! authenticated and connected to the share on the target's own runtime
//! ([`Blocking`]), then shared by the target, its uploads and its readers as [`Inner`].
//! Dropping any SMB handle happens inside that runtime, because the crate closes handles
//! from a spawned task.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use smb::{
    Connection, ConnectionConfig, CreateDisposition, CreateOptions, Directory, FileAccessMask,
    FileAttributes, FileCreateArgs, FileDispositionInformation, Guid, Resource, Session, Tree,
    UncPath,
};

use super::status::{map_err, nt_status, status_name, STATUS_BAD_NETWORK_NAME};
use super::transport::GuardedTcp;
use crate::guard::SelfIdentity;
use crate::targets::runtime::Blocking;
use crate::targets::{net, SmbUrl, TargetError, TargetSpec};

/// Bytes per SMB2 WRITE/READ request (clamped to what the server negotiated).
const CHUNK: usize = 1 << 20;
/// How long closing a session may take when the target is dropped.
const CLOSE_SECS: u64 = 3;

/// The runtime and the SMB session, shared by a target and its uploads and readers.
pub(super) struct Inner {
    /// The runtime; the target URL and timeout.
    pub(super) rt: Blocking,
    /// Connection, session and tree; `None` once closed.
    smb: Mutex<Option<(Connection, Session, Arc<Tree>)>>,
    /// The directory inside the share, with `\` separators and no leading one ("" = root).
    dir: String,
    /// Bytes per WRITE/READ request.
    pub(super) chunk: usize,
}

impl Inner {
    /// The target URL.
    pub(super) fn url(&self) -> &str {
        self.rt.url()
    }

    fn tree(&self) -> Result<Arc<Tree>, TargetError> {
        self.smb
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, _, t)| t.clone())
            .ok_or_else(|| TargetError::Unreachable {
                target: self.url().to_string(),
                detail: "the SMB session is closed".into(),
            })
    }

    /// `name` inside the target directory, as a path in the share.
    pub(super) fn path(&self, name: &str) -> String {
        if self.dir.is_empty() {
            name.to_string()
        } else {
            format!("{}\\{name}", self.dir)
        }
    }

    /// Opens `path` with `args`.
    pub(super) fn create(
        &self,
        op: &str,
        path: &str,
        args: FileCreateArgs,
    ) -> Result<Resource, TargetError> {
        let tree = self.tree()?;
        let url = self.url().to_string();
        self.rt.run(op, async move {
            tree.create(path, &args)
                .await
                .map_err(|e| map_err(&url, op, &e))
        })
    }

    /// Opens the file `name` of the target directory with `args`; anything but a file is
    /// closed again and refused.
    pub(super) fn create_file(
        &self,
        op: &str,
        name: &str,
        args: FileCreateArgs,
    ) -> Result<Resource, TargetError> {
        let file = self.create(op, &self.path(name), args)?;
        if !matches!(file, Resource::File(_)) {
            self.close(file);
            return Err(TargetError::Invalid {
                target: self.url().to_string(),
                why: format!("{name} is not a file"),
            });
        }
        Ok(file)
    }

    /// Closes a handle; errors are ignored (a closed connection closes it anyway).
    pub(super) fn close(&self, r: Resource) {
        let _g = self.rt.enter();
        let _ = self
            .rt
            .run_for("closing a handle", self.rt.timeout(), async {
                let _ = match &r {
                    Resource::File(f) => f.close().await,
                    Resource::Directory(d) => d.close().await,
                    Resource::Pipe(p) => p.close().await,
                };
                Ok(())
            });
        drop(r);
    }

    /// Marks an open file delete-on-close, then closes it.
    pub(super) fn delete_open(&self, op: &str, r: Resource) -> Result<(), TargetError> {
        let url = self.url().to_string();
        let res = {
            let r = &r;
            self.rt.run(op, async move {
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
    pub(super) fn open_dir(&self) -> Result<Arc<Directory>, TargetError> {
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
        let opened = self.create(&what, &self.dir, args).map_err(|e| match e {
            TargetError::NotFound { target, .. } if !self.dir.is_empty() => {
                TargetError::NoDirectory {
                    target,
                    dir: self.dir.replace('\\', "/"),
                    create: "create it in the share, writable by the SMB user (for example `smbclient //HOST/SHARE -U USER -c 'mkdir DIR'`)".into(),
                }
            }
            other => other,
        })?;
        match opened {
            Resource::Directory(d) => Ok(Arc::new(d)),
            other => {
                self.close(other);
                Err(TargetError::Invalid {
                    target: self.url().to_string(),
                    why: format!("{what} is not a directory"),
                })
            }
        }
    }

    pub(super) fn close_dir(&self, d: Arc<Directory>) {
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
            let _ = self.rt.run_for(
                "closing the SMB session",
                Duration::from_secs(CLOSE_SECS),
                async {
                    let _ = tree.disconnect().await;
                    let _ = session.logoff().await;
                    let _ = conn.close().await;
                    Ok(())
                },
            );
            drop(tree);
            drop(session);
            drop(conn);
        }
    }
}

/// Reads the password, dials through the guard, negotiates (SMB3 encryption when the server
/// supports it), authenticates and connects the share.
pub(super) fn connect(
    spec: &TargetSpec,
    target: &SmbUrl,
    me: &SelfIdentity,
) -> Result<Inner, TargetError> {
    let url = spec.url.to_string();
    let password = spec.password()?;
    let timeout = Duration::from_secs(spec.timeout_secs.max(1));
    // The crate times out each request; this bounds a whole operation.
    let rt = Blocking::new(&url, "SMB", timeout)?
        .with_limit(timeout.saturating_mul(2) + Duration::from_secs(1));
    let _g = rt.enter();
    let tcp = rt.block_on(net::connect_async(
        me,
        &url,
        &target.host,
        target.port,
        timeout,
    ))?;
    let transport =
        GuardedTcp::new(tcp).map_err(|e| TargetError::from_io(&url, "connecting", &e))?;
    let username = sspi::Username::new(&target.user, target.domain.as_deref()).map_err(|e| {
        TargetError::Invalid {
            target: url.clone(),
            why: format!("user name {:?}: {e}", target.user),
        }
    })?;
    // The only copy handed on goes into sspi's zeroizing `Secret`; ours is zeroized here.
    let identity = sspi::AuthIdentity {
        username,
        password: password.expose().to_string().into(),
    };
    drop(password);
    let share = &target.share;
    let unc = UncPath::from_str(&format!(r"\\{}\{share}", target.host)).map_err(|e| {
        TargetError::Invalid {
            target: url.clone(),
            why: format!("share {share:?}: {e}"),
        }
    })?;
    let setup = Setup {
        spec,
        target,
        url: &url,
        timeout,
    };
    let (conn, session, tree) = rt.run_for(
        "SMB connection setup",
        timeout.saturating_mul(3),
        setup.establish(Box::new(transport), identity, unc),
    )?;
    let chunk = chunk_size(&conn);
    Ok(Inner {
        smb: Mutex::new(Some((conn, session, Arc::new(tree)))),
        dir: share_dir(&target.path),
        chunk,
        rt,
    })
}

/// What the SMB setup needs to know for its messages and its configuration.
struct Setup<'a> {
    spec: &'a TargetSpec,
    target: &'a SmbUrl,
    url: &'a str,
    timeout: Duration,
}

impl Setup<'_> {
    /// Negotiates, authenticates and connects the share, closing what was opened when a
    /// later step fails.
    async fn establish(
        &self,
        transport: Box<GuardedTcp>,
        identity: sspi::AuthIdentity,
        unc: UncPath,
    ) -> Result<(Connection, Session, Tree), TargetError> {
        let url = self.url;
        let config = ConnectionConfig {
            port: Some(self.target.port),
            timeout: Some(self.timeout),
            encryption_mode: smb::connection::config::EncryptionMode::Allowed,
            compression_enabled: false,
            ..Default::default()
        };
        let conn =
            Connection::from_transport(transport, &self.target.host, Guid::generate(), config)
                .await
                .map_err(|e| map_err(url, "SMB negotiation", &e))?;
        let session = match conn.authenticate(identity).await {
            Ok(s) => s,
            Err(e) => {
                let _ = conn.close().await;
                return Err(self.auth_error(&e));
            }
        };
        match session.tree_connect(&unc).await {
            Ok(tree) => Ok((conn, session, tree)),
            Err(e) => {
                let _ = session.logoff().await;
                let _ = conn.close().await;
                let share = &self.target.share;
                Err(match nt_status(&e) {
                    Some(STATUS_BAD_NETWORK_NAME) => TargetError::NotFound {
                        target: url.to_string(),
                        what: format!("share {share:?} (STATUS_BAD_NETWORK_NAME)"),
                    },
                    _ => map_err(url, &format!("connecting share {share}"), &e),
                })
            }
        }
    }

    /// A failed session setup: wrong credentials, unless the error says otherwise (a
    /// timeout, a lost connection, a full disk).
    fn auth_error(&self, e: &smb::Error) -> TargetError {
        match map_err(self.url, "SMB session setup", e) {
            TargetError::Io { .. }
            | TargetError::Permission { .. }
            | TargetError::NotFound { .. } => TargetError::Auth {
                target: self.url.to_string(),
                user: match &self.target.domain {
                    Some(d) => format!("{d}\\{}", self.target.user),
                    None => self.target.user.clone(),
                },
                detail: nt_status(e)
                    .map(status_name)
                    .unwrap_or_else(|| e.to_string()),
                hint: credential_hint(self.spec),
            },
            other => other,
        }
    }
}

/// Bytes per request: [`CHUNK`], or less when the server negotiated less.
fn chunk_size(conn: &Connection) -> usize {
    conn.conn_info()
        .map(|i| {
            let n = &i.negotiation;
            CHUNK
                .min(n.max_write_size as usize)
                .min(n.max_read_size as usize)
        })
        .unwrap_or(64 << 10)
        .max(4096)
}

/// The directory inside the share with `\` separators and no leading one.
fn share_dir(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("\\")
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
