//! Shared test bed: a real SoftHSM2 token made by `hsm-sim/up`, and the `offbox` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The offbox binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_offbox"))
}

/// The key backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SoftHSM2 through PKCS#11.
    Pkcs11,
    /// swtpm through tss-esapi.
    Tpm,
}

impl Backend {
    /// The device slot's name in reports.
    pub fn slot(self) -> &'static str {
        match self {
            Backend::Pkcs11 => "pkcs11",
            Backend::Tpm => "tpm",
        }
    }
}

/// Runs the listed `fn name(Backend)` test bodies once per backend, as
/// `pkcs11::name` and `tpm::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod pkcs11 {
            $( #[test] fn $name() { super::$name(super::common::Backend::Pkcs11) } )*
        }
        mod tpm {
            $( #[test] fn $name() { super::$name(super::common::Backend::Tpm) } )*
        }
    };
}

/// A throwaway simulator directory: SoftHSM token, config, PIN, recovery shares.
pub struct Sim {
    pub dir: tempfile::TempDir,
    pub softhsm_conf: PathBuf,
}

impl Sim {
    /// `hsm-sim/up` with a recovery key (3 of 5), then `keys init`.
    pub fn new() -> Sim {
        Self::with_args(&[], true)
    }

    /// A simulator for `backend`, with a recovery key and an initialized KEK.
    pub fn for_backend(backend: Backend) -> Sim {
        match backend {
            Backend::Pkcs11 => Self::with_args(&[], true),
            Backend::Tpm => Self::with_args(&["--tpm"], true),
        }
    }

    /// `hsm-sim/up DIR ARGS...`, which runs `keys init` and the recovery ceremony; with
    /// `init` false, the token (or TPM) is left without keys (`--no-keys`: no recovery key).
    pub fn with_args(args: &[&str], init: bool) -> Sim {
        let dir = tempfile::Builder::new()
            .prefix("offbox-sim")
            .tempdir()
            .unwrap();
        let sim = dir.path().join("sim");
        let out = Command::new(repo().join("hsm-sim/up"))
            .arg(&sim)
            .args(args)
            .args(if init { None } else { Some("--no-keys") })
            .env("OFFBOX_BIN", bin())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hsm-sim/up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Sim {
            softhsm_conf: sim.join("softhsm2.conf"),
            dir,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("sim")
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("offbox.toml")
    }

    pub fn share(&self, i: u32) -> PathBuf {
        self.path().join(format!("shares/share-{i}-of-5.txt"))
    }

    /// Edits the config text.
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let t = std::fs::read_to_string(self.config()).unwrap();
        std::fs::write(self.config(), f(t)).unwrap();
    }

    /// Small segments, so that small test trees span many segments.
    pub fn small_segments(&self) {
        self.edit_config(|t| t.replace("[backup]\n", "[backup]\nsegment_size = 4096\n"));
    }

    /// `offbox --config CFG ARGS...` with the simulator's environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config")
            .arg(self.config())
            .args(args)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("TSS2_LOG", "all+none")
            .env("OFFBOX_STATE_DIR", self.path().join("state"))
            .env_remove("OFFBOX_CONFIG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "offbox {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `backup create --kind KIND --source SRC --output -` into a file; returns stderr.
    pub fn backup(&self, kind: &str, src: &Path, archive: &Path) -> String {
        let out = self
            .cmd(&[
                "backup",
                "create",
                "--kind",
                kind,
                "--source",
                src.to_str().unwrap(),
                "--output",
                "-",
            ])
            .stdout(std::fs::File::create(archive).unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "backup failed: {err}");
        err
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("hsm-sim/down"))
            .arg(self.path())
            .output();
    }
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Lists every file under `dir` (relative paths), for "nothing left behind" checks.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, p: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                out.push(path.strip_prefix(base).unwrap().display().to_string());
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(base, &path, out);
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `offbox verify --keyless --public-key PEM ARCHIVE` with an empty environment: no HSM,
/// TPM, config or key, as a backup server runs it.
pub fn keyless_verify(pem: &Path, archive: &Path) -> Output {
    Command::new(bin())
        .args(["verify", "--keyless", "--public-key"])
        .arg(pem)
        .arg(archive)
        .env_clear()
        .output()
        .unwrap()
}
