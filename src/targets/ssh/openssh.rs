//! OpenSSH's own client (`ssh`) as the data transport: started on a connection offbox
//! dialled through the guard ([`super::fdpass`]), with no configuration file, no agent, the
//! appliance's key only, and the pinned known_hosts as the only trust; it runs the server's
//! `sftp` subsystem on its standard input and output.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::fdpass::Handoff;
use super::host_key::host_pattern;
use crate::targets::{Retry, SshUrl, TargetError, TargetSpec};

/// What starting `ssh` for one target needs (taken from its [`TargetSpec`]).
#[derive(Clone)]
pub(super) struct SshArgs {
    /// The target URL, for messages.
    pub url: String,
    /// User, host, port.
    pub target: SshUrl,
    /// The pinned host keys.
    pub known_hosts: PathBuf,
    /// The appliance's private key.
    pub identity: PathBuf,
    /// Network timeout, seconds.
    pub timeout_secs: u64,
}

impl SshArgs {
    pub(super) fn new(spec: &TargetSpec, target: &SshUrl) -> SshArgs {
        SshArgs {
            url: spec.url.to_string(),
            target: target.clone(),
            known_hosts: spec.known_hosts.clone(),
            identity: spec.ssh_identity.clone(),
            timeout_secs: spec.timeout_secs,
        }
    }
}

/// Transport ciphers, fastest first on hardware with AES instructions: the archive is
/// already encrypted and authenticated, so the transport cipher has to be fast and sound.
const CIPHERS: &str =
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr";

/// The last bytes of `ssh`'s standard error kept for messages.
const STDERR_KEEP: usize = 4096;

/// A running `ssh`, killed and reaped on drop.
pub(super) struct Ssh {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread that keeps `stderr`; it ends at the pipe's end.
    reader: Option<std::thread::JoinHandle<()>>,
    url: String,
    user: String,
    identity: PathBuf,
}

/// The operation of the error `ssh` ended with when it refused the server's host key.
const HOST_KEY_OP: &str = "checking the server's host key against the pinned one";

/// Whether `e` is `ssh`'s refusal of the server's host key.
pub(super) fn is_host_key_refusal(e: &TargetError) -> bool {
    matches!(e, TargetError::Io { op, .. } if op == HOST_KEY_OP)
}

/// The `ssh` program: the first `ssh` on `PATH`.
pub(super) fn program(url: &str) -> Result<PathBuf, TargetError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    find_ssh(&path, url)
}

/// The first `ssh` in the directories of `path`.
fn find_ssh(path: &std::ffi::OsStr, url: &str) -> Result<PathBuf, TargetError> {
    std::env::split_paths(path)
        .map(|d| d.join("ssh"))
        .find(|p| p.is_file())
        .ok_or_else(|| TargetError::Invalid {
            target: url.to_string(),
            why: "OpenSSH's client `ssh` is not installed (not found on PATH); install the openssh-client package".into(),
        })
}

/// Quotes `s` for the shell `ssh` runs its `ProxyCommand` with, and escapes `%` (ssh's
/// token character).
fn sh_quote(s: &Path) -> String {
    let s = s.to_string_lossy().replace('%', "%%");
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `ssh` command line for `target` (the connection comes from `socket`).
fn command(ssh: &Path, a: &SshArgs, exe: &Path, socket: &Path) -> Command {
    let mut c = Command::new(ssh);
    let target = &a.target;
    let opt = |k: &str, v: &str| format!("{k}={v}");
    let timeout = a.timeout_secs.max(1).to_string();
    c.arg("-F").arg("none");
    for o in [
        opt("BatchMode", "yes"),
        opt("StrictHostKeyChecking", "yes"),
        opt("UserKnownHostsFile", &a.known_hosts.to_string_lossy()),
        opt("GlobalKnownHostsFile", "none"),
        opt("HostKeyAlias", &host_pattern(&target.host, target.port)),
        opt("UpdateHostKeys", "no"),
        opt("CheckHostIP", "no"),
        opt("IdentitiesOnly", "yes"),
        opt("IdentityAgent", "none"),
        opt("IdentityFile", &a.identity.to_string_lossy()),
        opt("PreferredAuthentications", "publickey"),
        opt("PasswordAuthentication", "no"),
        opt("KbdInteractiveAuthentication", "no"),
        opt("ControlMaster", "no"),
        opt("ControlPath", "none"),
        opt("ForwardAgent", "no"),
        opt("ForwardX11", "no"),
        opt("ClearAllForwardings", "yes"),
        opt("Compression", "no"),
        opt("Ciphers", CIPHERS),
        opt("ConnectTimeout", &timeout),
        opt("ServerAliveInterval", &timeout),
        opt("ServerAliveCountMax", "2"),
        opt("LogLevel", "ERROR"),
        opt("ProxyUseFdpass", "yes"),
        opt(
            "ProxyCommand",
            &format!("{} ssh-fdpass {}", sh_quote(exe), sh_quote(socket)),
        ),
    ] {
        c.arg("-o").arg(o);
    }
    c.arg("-T")
        .arg("-l")
        .arg(&target.user)
        .arg("-p")
        .arg(target.port.to_string())
        .arg("-s")
        .arg("--")
        .arg(&target.host)
        .arg("sftp");
    // A clean environment: offbox's may hold a PIN or a password (pin_env, password_env),
    // which neither ssh nor the helper it starts needs. /bin/sh runs the ProxyCommand.
    c.env_clear();
    for keep in ["PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR"] {
        if let Some(v) = std::env::var_os(keep) {
            c.env(keep, v);
        }
    }
    c.env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

impl Ssh {
    /// Starts `ssh` on `tcp` (connected through the guard) and hands the connection over.
    pub(super) fn start(
        a: &SshArgs,
        tcp: TcpStream,
    ) -> Result<(Ssh, ChildStdin, ChildStdout), TargetError> {
        let url = a.url.clone();
        let io = |op: &str, e: std::io::Error| TargetError::Io {
            target: url.clone(),
            op: op.into(),
            detail: e.to_string(),
            retry: Retry::Temporary,
        };
        let ssh = program(&url)?;
        let exe = std::env::current_exe().map_err(|e| io("finding offbox's own program", e))?;
        let handoff = Handoff::new().map_err(|e| io("preparing the connection hand-off", e))?;
        // ssh works the socket non-blocking; offbox's own read and write timeouts go.
        let _ = tcp.set_read_timeout(None).and(tcp.set_write_timeout(None));
        let mut child = command(&ssh, a, &exe, handoff.socket())
            .spawn()
            .map_err(|e| io(&format!("starting {}", ssh.display()), e))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut reader = None;
        if let Some(mut err) = child.stderr.take() {
            let keep = stderr.clone();
            reader = Some(std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut k = keep.lock().unwrap_or_else(|p| p.into_inner());
                    k.extend_from_slice(&buf[..n]);
                    let excess = k.len().saturating_sub(STDERR_KEEP);
                    k.drain(..excess);
                }
            }));
        }
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let mut me = Ssh {
            child,
            stderr,
            reader,
            url,
            user: a.target.user.clone(),
            identity: a.identity.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(a.timeout_secs.max(1));
        let given = handoff.give(&tcp, deadline, || {
            matches!(me.child.try_wait(), Ok(Some(_)) | Err(_))
        });
        drop(tcp);
        if let Err(e) = given {
            return Err(me.failure("starting ssh", &e.to_string()));
        }
        match (stdin, stdout) {
            (Some(i), Some(o)) => Ok((me, i, o)),
            _ => Err(me.failure("starting ssh", "no standard input or output")),
        }
    }

    /// What `ssh` said on standard error, trimmed.
    fn said(&self) -> String {
        let k = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&k).trim().to_string()
    }

    /// The error of a failed `op` (`detail`: the client's own words), from what `ssh` said:
    /// authentication, host key, or a lost connection.
    pub(super) fn failure(&mut self, op: &str, detail: &str) -> TargetError {
        // Give ssh a moment to end, then read all it said: once it ended, its standard
        // error reaches its end (bounded: a helper it started may hold the pipe a while).
        for _ in 0..50 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !matches!(self.child.try_wait(), Ok(None)) {
            let until = Instant::now() + Duration::from_secs(2);
            while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let said = self.said();
        let target = self.url.clone();
        if said.contains("Permission denied") {
            let user = &self.user;
            return TargetError::Auth {
                target,
                user: user.clone(),
                detail: said,
                hint: format!(
                    "add the output of `offbox target ssh-key` ({}) to ~{user}/.ssh/authorized_keys on the server",
                    super::key_pair::pub_path(&self.identity).display()
                ),
            };
        }
        if said.contains("Host key verification failed") || said.contains("HOST IDENTIFICATION") {
            return TargetError::Io {
                target,
                op: HOST_KEY_OP.into(),
                detail: said,
                retry: Retry::Permanent,
            };
        }
        let ended = !matches!(self.child.try_wait(), Ok(None));
        let detail = match (said.is_empty(), ended) {
            (true, _) => detail.to_string(),
            (false, _) => format!("{detail}; ssh: {said}"),
        };
        if ended {
            TargetError::Unreachable {
                target,
                detail: format!("{op}: connection lost ({detail})"),
            }
        } else {
            TargetError::Io {
                target,
                op: op.to_string(),
                detail,
                retry: Retry::Temporary,
            }
        }
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_command_arguments_are_quoted_for_the_shell_and_ssh() {
        assert_eq!(sh_quote(Path::new("/usr/bin/offbox")), "'/usr/bin/offbox'");
        assert_eq!(
            sh_quote(Path::new("/tmp/a b/it's%h")),
            r"'/tmp/a b/it'\''s%%h'"
        );
    }

    #[test]
    fn ssh_is_started_locked_down() {
        let a = SshArgs {
            url: "ssh://backup@nas:2222/srv/b".into(),
            target: SshUrl {
                user: "backup".into(),
                host: "nas".into(),
                port: 2222,
                path: "/srv/b".into(),
            },
            known_hosts: "/var/lib/offbox/ssh/known_hosts".into(),
            identity: "/var/lib/offbox/ssh/id_ed25519".into(),
            timeout_secs: 30,
        };
        let c = command(
            Path::new("/usr/bin/ssh"),
            &a,
            Path::new("/usr/bin/offbox"),
            Path::new("/tmp/offbox-ssh.x/fd"),
        );
        let args: Vec<String> = c
            .get_args()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let has = |o: &str| args.iter().any(|a| a == o);
        for o in [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=/var/lib/offbox/ssh/known_hosts",
            "GlobalKnownHostsFile=none",
            "HostKeyAlias=[nas]:2222",
            "UpdateHostKeys=no",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "IdentityFile=/var/lib/offbox/ssh/id_ed25519",
            "PasswordAuthentication=no",
            "ControlPath=none",
            "ForwardAgent=no",
            "ProxyUseFdpass=yes",
            "ProxyCommand='/usr/bin/offbox' ssh-fdpass '/tmp/offbox-ssh.x/fd'",
        ] {
            assert!(has(o), "{o} missing from {args:?}");
        }
        assert_eq!(&args[..2], ["-F", "none"]);
        assert_eq!(
            &args[args.len() - 9..],
            ["-T", "-l", "backup", "-p", "2222", "-s", "--", "nas", "sftp"]
        );
        // Nothing of offbox's environment goes through but these (no PIN, no password).
        for (k, _) in c.get_envs() {
            let k = k.to_string_lossy();
            assert!(
                ["PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR", "SHELL"].contains(&&*k),
                "{k}"
            );
        }
        let shell = c
            .get_envs()
            .find(|(k, _)| *k == "SHELL")
            .and_then(|(_, v)| v);
        assert_eq!(shell, Some(std::ffi::OsStr::new("/bin/sh")));
    }

    #[test]
    fn a_missing_ssh_is_a_clear_error() {
        let e = find_ssh("/nonexistent-a:/nonexistent-b".as_ref(), "ssh://u@h/d").unwrap_err();
        assert!(matches!(e, TargetError::Invalid { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("`ssh` is not installed"), "{text}");
        assert!(
            text.contains("install the openssh-client package"),
            "{text}"
        );
    }
}
