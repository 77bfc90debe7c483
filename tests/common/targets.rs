//! Test bed for the off-box targets: `tests/testbed/up` in a fresh directory (a network
//! namespace with real servers), torn down by `tests/testbed/down` on drop, also when the
//! test fails. Include with `#[path = "common/targets.rs"] mod tb;` next to `mod common;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{repo, Sim};

/// A running test bed.
pub struct Testbed {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Testbed {
    /// Starts the test bed with extra environment for `up`.
    pub fn up_with(envs: &[(&str, &str)]) -> Testbed {
        let dir = tempfile::Builder::new()
            .prefix("offbox-tb")
            .tempdir()
            .unwrap();
        let path = dir.path().join("bed");
        // Tear down even if `up` fails half-way.
        let mut tb = Testbed {
            dir,
            env: HashMap::new(),
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

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("tests/testbed/down"))
            .arg(self.path())
            .output();
    }
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
