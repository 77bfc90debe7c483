//! Test bed for the off-box targets: `tests/testbed/up` in a fresh directory (a network
//! namespace with real servers), torn down by `tests/testbed/down` on drop, also when the
//! test fails. Include with `#[path = "common/targets.rs"] mod tb;` next to `mod common;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::common::{pattern, repo, stderr, Sim};

/// A running test bed.
pub struct Testbed {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
    /// Held by a bed with SeaweedFS, until after `down`: `weed mini` puts its filer's gRPC
    /// socket at a fixed path under /tmp (`seaweedfs-filer-grpc-PORT.sock`, not settable), so
    /// two S3 beds at once take each other's socket. The S3 tests of one binary run one at a
    /// time; cargo runs the test binaries one after another.
    _one_s3: Option<MutexGuard<'static, ()>>,
}

/// See [`Testbed`]'s `_one_s3`.
static ONE_S3_BED: Mutex<()> = Mutex::new(());

impl Testbed {
    /// Starts the test bed with extra environment for `up`.
    pub fn up_with(envs: &[(&str, &str)]) -> Testbed {
        let dir = tempfile::Builder::new()
            .prefix("offbox-tb")
            .tempdir()
            .unwrap();
        let path = dir.path().join("bed");
        // Tear down even if `up` fails half-way.
        let one_s3 = envs
            .iter()
            .any(|(k, v)| *k == "TESTBED_S3" && !v.is_empty())
            .then(|| ONE_S3_BED.lock().unwrap_or_else(|e| e.into_inner()));
        let mut tb = Testbed {
            dir,
            env: HashMap::new(),
            _one_s3: one_s3,
        };
        let out = Command::new(repo().join("tests/testbed/up"))
            .arg(&path)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tests/testbed/up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(path.join("targets.env")).unwrap();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                if !k.starts_with('#') {
                    tb.env.insert(k.to_string(), v.to_string());
                }
            }
        }
        tb
    }

    pub fn up() -> Testbed {
        Self::up_with(&[])
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("bed")
    }

    pub fn get(&self, k: &str) -> &str {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("{k} not in targets.env"))
    }

    /// The `[targets]` section `up` wrote.
    pub fn toml(&self) -> String {
        std::fs::read_to_string(self.path().join("offbox-targets.toml")).unwrap()
    }

    /// Appends the test bed's `[targets]` section to the simulator's config, after `edit`.
    pub fn attach(&self, sim: &Sim, edit: impl FnOnce(String) -> String) {
        let t = edit(self.toml());
        sim.edit_config(|c| format!("{c}\n{t}"));
    }

    /// Files in a server-side directory (visible from here: the storage is a host tmpfs).
    pub fn files(&self, dir_var: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.get(dir_var))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// PIDs in the namespace other than the listening sshd: the per-connection sessions.
    pub fn ssh_session_pids(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "pids", self.get("TESTBED_NS")])
            .output()
            .unwrap();
        // Only sshd's session children: the namespace also runs rpcbind, Ganesha and smbd.
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|p| *p != self.get("SSHD_PID"))
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .map(|c| c.trim() == "sshd" || c.trim() == "sftp-server")
                    .unwrap_or(false)
            })
            .map(str::to_string)
            .collect()
    }
}

impl Testbed {
    /// The last lines of every server log in the bed and whether each server still runs:
    /// for the message of a failing test.
    pub fn server_logs(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.env {
            if k.ends_with("_PID") {
                let alive = Path::new(&format!("/proc/{v}")).exists();
                out.push_str(&format!("{k}={v} alive={alive}\n"));
            }
        }
        for log in [
            "ssh/sshd.log",
            "smb/smbd.log",
            "nfs/ganesha.log",
            "nfs/ganesha.out",
            "nfs/rpcbind.log",
            "notify/syslog/rsyslogd.log",
            "notify/smtp/smtpd.log",
        ] {
            if let Ok(text) = std::fs::read_to_string(self.path().join(log)) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                out.push_str(&format!("--- {log}\n{}\n", tail.join("\n")));
            }
        }
        out
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("tests/testbed/down"))
            .arg(self.path())
            .output();
    }
}

/// A config with the `[targets]` header and only the target tables whose header starts
/// with `table` (`"targets.testbed-ssh]"` for that one target, `"targets.testbed-ssh"` for
/// every ssh target of the bed): for tests that need no NFS or SMB timeouts.
pub fn keep_targets(toml: String, table: &str) -> String {
    toml.split("\n[")
        .enumerate()
        .filter(|(i, part)| *i == 0 || part.starts_with(table))
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                format!("[{part}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits up to `secs` for `cond`.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Names that are final archives.
pub fn finals(names: &[String]) -> Vec<&String> {
    names
        .iter()
        .filter(|n| n.starts_with("offbox-") && n.ends_with(".obx"))
        .collect()
}

/// Names that are upload temporaries.
pub fn temps(names: &[String]) -> Vec<&String> {
    names
        .iter()
        .filter(|n| n.starts_with(".offbox-tmp."))
        .collect()
}

/// A FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success());
}

/// A fresh test bed with its `[targets]` section attached to a fresh simulator.
pub fn setup() -> (Sim, Testbed) {
    let tb = Testbed::up();
    let sim = Sim::new();
    tb.attach(&sim, |t| t);
    (sim, tb)
}

/// A small system tree to back up: a config file and `mib` MiB of incompressible data.
pub fn source(sim: &Sim, mib: usize) -> PathBuf {
    let src = sim.dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/app.conf"), b"k=v\n").unwrap();
    std::fs::write(src.join("data.bin"), pattern(mib << 20, 7)).unwrap();
    src
}

/// The arguments of a system backup of `src` to `to`.
pub fn backup_args<'a>(src: &'a str, to: &'a str) -> Vec<&'a str> {
    vec![
        "backup", "create", "--kind", "system", "--source", src, "--to", to,
    ]
}

pub fn backup_to(sim: &Sim, src: &Path, to: &str) -> Output {
    sim.run(&backup_args(src.to_str().unwrap(), to))
}

/// The archive names `backup list` shows for `to`.
pub fn list(sim: &Sim, to: &str) -> Vec<String> {
    let out = sim.ok(&["backup", "list", "--to", to]);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

/// One network target of the test bed, as the protocol tests share it.
pub struct Remote {
    /// The target's name in the `[targets]` section, e.g. "testbed-ssh".
    pub target: &'static str,
    /// The key in targets.env of the server-side directory the target writes to.
    pub data_dir_key: &'static str,
    /// The same for the small (2 MiB) target `<target>-small`.
    pub small_dir_key: &'static str,
    /// The URL scheme, e.g. "ssh://".
    pub scheme: &'static str,
    /// How the target's URL starts when offbox shows it, e.g. "ssh://offbox-tb@".
    pub shown_url: &'static str,
}

impl Remote {
    /// Backs `src` up to the target: it succeeds, names the target's URL, and the server
    /// holds exactly the one new archive and no temporary. Returns stderr and the names
    /// `backup list` shows.
    pub fn first_backup(&self, sim: &Sim, tb: &Testbed, src: &Path) -> (String, Vec<String>) {
        let out = backup_to(sim, src, self.target);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!("published to {}", self.shown_url)),
            "{err}"
        );
        let names = list(sim, self.target);
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("offbox-hsm-sim-system-"), "{names:?}");
        let files = tb.files(self.data_dir_key);
        assert_eq!(finals(&files), vec![&names[0]], "{files:?}");
        assert!(temps(&files).is_empty(), "{files:?}");
        (err, names)
    }

    /// Restores and verifies `name` straight from the target, byte-exact against `src`.
    pub fn restore_and_verify(&self, sim: &Sim, src: &Path, name: &str) {
        let dest = sim.dir.path().join("restored");
        sim.ok(&[
            "restore",
            "--from",
            self.target,
            name,
            "--to",
            dest.to_str().unwrap(),
        ]);
        let back = dest.join(src.strip_prefix("/").unwrap());
        assert_eq!(
            std::fs::read(back.join("data.bin")).unwrap(),
            std::fs::read(src.join("data.bin")).unwrap()
        );
        assert_eq!(std::fs::read(back.join("etc/app.conf")).unwrap(), b"k=v\n");
        let v = sim.ok(&["verify", "--from", self.target, name]);
        assert!(String::from_utf8_lossy(&v).contains("verify OK"));
    }

    /// `target check` succeeds and reports the URL, latency and free space, leaving no
    /// temporary behind. Returns its stdout.
    pub fn check_ok(&self, sim: &Sim, tb: &Testbed) -> String {
        let out = sim.run(&["target", "check", self.target]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            text.contains(&format!("{} OK", self.target))
                && text.contains(&format!("url={}", self.shown_url))
                && text.contains("connect=")
                && text.contains("probe=")
                && text.contains("free="),
            "{text}"
        );
        assert!(temps(&tb.files(self.data_dir_key)).is_empty());
        text
    }

    /// A second archive after `first`, then prune (dry run first) keeps the newest only.
    pub fn second_backup_and_prune(&self, sim: &Sim, tb: &Testbed, src: &Path, first: &str) {
        std::thread::sleep(Duration::from_millis(1100));
        assert!(backup_to(sim, src, self.target).status.success());
        assert_eq!(list(sim, self.target).len(), 2);
        let dry = sim.ok(&[
            "prune",
            "--to",
            self.target,
            "--keep-last",
            "1",
            "--dry-run",
        ]);
        assert!(String::from_utf8_lossy(&dry).contains(&format!("would delete\t{first}")));
        assert_eq!(list(sim, self.target).len(), 2, "dry run deletes nothing");
        sim.ok(&["prune", "--to", self.target, "--keep-last", "1"]);
        let left = list(sim, self.target);
        assert_eq!(left.len(), 1);
        assert_ne!(left[0], first);
        assert_eq!(finals(&tb.files(self.data_dir_key)).len(), 1);
    }

    /// Spawns a secrets backup reading a FIFO, feeds it until the temporary file on the
    /// server has data, then stalls it. Returns the child and the channel that lets
    /// the feeder write the rest and close.
    pub fn start_stalled_upload(&self, sim: &Sim, tb: &Testbed) -> (Child, mpsc::Sender<()>) {
        let fifo = sim.dir.path().join("export.fifo");
        mkfifo(&fifo);
        let mut child = sim
            .cmd(&[
                "backup",
                "create",
                "--kind",
                "secrets",
                "--source",
                fifo.to_str().unwrap(),
                "--to",
                self.target,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        // zstd's worker jobs hand their output back only while input keeps coming, so the
        // feeder writes 1 MiB at a time until bytes reach the server (at most 64 MiB), and
        // only then stalls.
        let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let feeder_started = started.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            for i in 0..64 {
                if feeder_started.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                if f.write_all(&pattern(1 << 20, 3 + i)).is_err() {
                    return;
                }
            }
            let _ = rx.recv();
            let _ = f.write_all(&pattern(4 << 20, 100));
        });
        let dir = tb.get(self.data_dir_key).to_string();
        let has_data = wait_for(30, || {
            std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with(".offbox-tmp.")
                    && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
            })
        });
        started.store(true, std::sync::atomic::Ordering::SeqCst);
        if !has_data {
            let files = tb.files(self.data_dir_key);
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the upload never started: {files:?}; offbox said: {}\nthe servers:\n{}",
                stderr(&out),
                tb.server_logs()
            );
        }
        (child, tx)
    }

    /// The next backup succeeds, removes the leftover temporary and publishes one archive.
    pub fn next_run_succeeds_and_cleans(&self, sim: &Sim, tb: &Testbed) {
        let src = source(sim, 1);
        let out = backup_to(sim, &src, self.target);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("removed the leftover .offbox-tmp."), "{err}");
        let files = tb.files(self.data_dir_key);
        assert_eq!(temps(&files).len(), 0, "{files:?}");
        assert_eq!(finals(&files).len(), 1, "{files:?}");
    }

    /// offbox SIGKILLed mid-upload leaves a temporary and no archive; the next run cleans.
    pub fn killed_offbox_leaves_no_archive_and_next_run_cleans(&self) {
        let (sim, tb) = setup();
        let (mut child, _tx) = self.start_stalled_upload(&sim, &tb);
        child.kill().unwrap(); // SIGKILL: no destructor runs
        child.wait().unwrap();
        let files = tb.files(self.data_dir_key);
        assert!(finals(&files).is_empty(), "{files:?}");
        assert_eq!(temps(&files).len(), 1, "{files:?}");
        self.next_run_succeeds_and_cleans(&sim, &tb);
    }

    /// Starts a stalled upload, lets `kill_server` kill the server side, then lets the
    /// upload go on: offbox fails with exit code 1 naming the target, and no archive is
    /// published. Returns offbox's stderr; the caller runs `next_run_succeeds_and_cleans`
    /// once the server is back.
    pub fn killed_server_fails_cleanly(
        &self,
        sim: &Sim,
        tb: &Testbed,
        kill_server: impl FnOnce(&Testbed),
    ) -> String {
        let (child, tx) = self.start_stalled_upload(sim, tb);
        kill_server(tb);
        let _ = tx.send(());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success());
        assert_eq!(out.status.code(), Some(75), "{err}");
        assert!(
            err.contains(self.scheme),
            "the error names the target: {err}"
        );
        let files = tb.files(self.data_dir_key);
        assert!(finals(&files).is_empty(), "{files:?}");
        err
    }

    /// A backup of 6 MiB of incompressible data to the 2 MiB `<target>-small` fails as
    /// "full", says to prune, and leaves nothing behind. Returns offbox's stderr.
    pub fn full_target_is_a_clear_error(&self) -> String {
        let (sim, tb) = setup();
        let src = source(&sim, 6); // incompressible, on a 2 MiB tmpfs
        let out = backup_to(&sim, &src, &format!("{}-small", self.target));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(69), "{err}");
        assert!(err.contains("the target is full"), "{err}");
        assert!(err.contains("offbox prune"), "{err}");
        let files = tb.files(self.small_dir_key);
        assert!(files.is_empty(), "nothing left behind: {files:?}");
        err
    }
}
