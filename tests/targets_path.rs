//! The `file://` target on a real network mount: the test bed's sshd mounted with sshfs
//! (FUSE). Round trip, publish atomicity, and the refusal of the same directory when it is
//! reached through a local path instead.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::path::PathBuf;
use std::process::Command;

use common::{pattern, stderr, Sim};
use tb::{finals, temps, Testbed};

/// An sshfs mount of the test bed's data directory, unmounted on drop.
struct Sshfs {
    point: PathBuf,
}

impl Sshfs {
    fn mount(tb: &Testbed, at: PathBuf) -> Sshfs {
        std::fs::create_dir_all(&at).unwrap();
        let opts = format!(
            "IdentityFile={},UserKnownHostsFile={},StrictHostKeyChecking=yes,BatchMode=yes",
            tb.get("SSH_IDENTITY"),
            tb.get("SSH_KNOWN_HOSTS")
        );
        let st = Command::new("sshfs")
            .arg("-o")
            .arg(opts)
            .arg(format!(
                "offbox-tb@{}:{}",
                tb.get("TESTBED_REMOTE"),
                tb.get("SSH_DATA_DIR")
            ))
            .arg(&at)
            .status()
            .unwrap();
        assert!(st.success(), "sshfs mount failed");
        Sshfs { point: at }
    }
}

impl Drop for Sshfs {
    fn drop(&mut self) {
        let _ = Command::new("fusermount")
            .arg("-u")
            .arg(&self.point)
            .status();
    }
}

#[test]
fn round_trip_on_sshfs_mount() {
    let tb = Testbed::up();
    let sim = Sim::new();
    tb.attach(&sim, |t| t);
    let mnt = Sshfs::mount(&tb, sim.dir.path().join("mnt"));
    let url = format!("file://{}", mnt.point.display());
    let src = sim.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), pattern(2 << 20, 11)).unwrap();
    // A leftover of a killed run is cleaned; final names appear only when complete.
    std::fs::write(
        mnt.point.join(".offbox-tmp.hsm-sim.0123456789abcdef"),
        b"partial",
    )
    .unwrap();
    let out = sim.run(&[
        "backup",
        "create",
        "--kind",
        "system",
        "--source",
        src.to_str().unwrap(),
        "--to",
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files = tb.files("SSH_DATA_DIR");
    assert!(temps(&files).is_empty(), "{files:?}");
    let f = finals(&files);
    assert_eq!(f.len(), 1, "{files:?}");
    let dest = sim.dir.path().join("restored");
    sim.ok(&[
        "restore",
        "--from",
        &url,
        f[0],
        "--to",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(dest.join(src.strip_prefix("/").unwrap()).join("a.bin")).unwrap(),
        pattern(2 << 20, 11)
    );
    // The storage directory itself, reached locally, is a local filesystem: refused.
    let out = sim.run(&[
        "target",
        "check",
        &format!("file://{}", tb.get("SSH_DATA_DIR")),
    ]);
    assert!(
        stderr(&out).contains("local filesystem"),
        "{}",
        stderr(&out)
    );
}
