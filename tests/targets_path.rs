//! The `file://` target on a real network mount: the test bed's sshd mounted with sshfs
//! (FUSE). Round trip, publish atomicity, and the refusal of the same directory when it is
//! reached through a local path instead.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{pattern, stderr, Sim};
use tb::{backup_to, finals, setup, source, temps, Remote, Testbed};

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
    // A directory that does not exist on the mount says so, and how to make it.
    let missing = mnt.point.join("nonexistent");
    let url = format!("file://{}", missing.display());
    let out = sim.run(&["--json", "target", "check", &url]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.starts_with(&format!(
            "offbox: error: connecting to the target failed: {url}: the directory {} does not exist on the target; mount the network share there",
            missing.display()
        )),
        "{err}"
    );
    assert!(!err.contains("backup list"), "{err}");
    assert!(err.contains("\"kind\":\"target.no_directory\""), "{err}");
}

/// The first hex digits of this boot's id, as offbox puts them in run ids.
fn boot8() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect()
}

/// Two runs at once: the second (backup or prune) exits 75 and leaves the first one's
/// temporary alone; the first then publishes a complete archive.
#[test]
fn a_second_run_waits_for_the_lock_and_leaves_the_first_upload_alone() {
    let (sim, tb) = setup();
    let mnt = Sshfs::mount(&tb, sim.dir.path().join("mnt"));
    let url = format!("file://{}", mnt.point.display());
    let remote = Remote {
        target: Box::leak(url.clone().into_boxed_str()),
        data_dir_key: "SSH_DATA_DIR",
        small_dir_key: "SSH_DATA_DIR",
        scheme: "file://",
        shown_url: "file://",
    };
    let (child, tx) = remote.start_stalled_upload(&sim, &tb);
    let before = temps(&tb.files("SSH_DATA_DIR"))
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(
        before[0].starts_with(&format!(".offbox-tmp.hsm-sim.{}-", child.id())),
        "the temporary names its run: {before:?}"
    );
    let src = source(&sim, 1);
    let busy = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(75), "{}", stderr(out));
        let err = stderr(out);
        assert!(
            err.contains("busy; another offbox run holds the lock"),
            "{err}"
        );
        assert!(err.contains(&format!("(pid {})", child.id())), "{err}");
    };
    busy(&backup_to(&sim, &src, &url));
    busy(&sim.run(&["prune", "--to", &url, "--keep-last", "1"]));
    let t = Instant::now();
    let mut args = tb::backup_args(src.to_str().unwrap(), &url);
    args.extend(["--wait", "1"]);
    let waited = sim.run(&args);
    busy(&waited);
    assert!(t.elapsed() >= Duration::from_secs(1), "it waited");
    assert!(
        stderr(&waited).contains("within 1 s"),
        "{}",
        stderr(&waited)
    );
    let files = tb.files("SSH_DATA_DIR");
    assert_eq!(
        temps(&files),
        before.iter().collect::<Vec<_>>(),
        "untouched"
    );
    assert!(finals(&files).is_empty(), "{files:?}");

    tx.send(()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let files = tb.files("SSH_DATA_DIR");
    assert!(temps(&files).is_empty(), "{files:?}");
    let f = finals(&files);
    assert_eq!(f.len(), 1, "{files:?}");
    let v = sim.ok(&["verify", "--from", &url, f[0]]);
    assert!(String::from_utf8_lossy(&v).contains("verify OK"));
    cleanup_and_prune_touch_only_this_appliance(&sim, &tb, &url, &src, f[0]);
}

/// With the lock free: cleanup removes only dead runs' temporaries of this appliance, and
/// prune deletes only what parses as exactly this appliance's archive name.
fn cleanup_and_prune_touch_only_this_appliance(
    sim: &Sim,
    tb: &Testbed,
    url: &str,
    src: &std::path::Path,
    secrets: &str,
) {
    let data = PathBuf::from(tb.get("SSH_DATA_DIR"));
    let boot = boot8();
    let me = std::process::id();
    let dead = format!(".offbox-tmp.hsm-sim.4194305-{boot}.0123456789abcdef");
    let old_mine = "offbox-hsm-sim-system-20200101T000000Z-0123abcd.obx".to_string();
    let untouchable = [
        format!(".offbox-tmp.hsm-sim.{me}-{boot}.0123456789abcdef"),
        format!(".offbox-tmp.pam01.4194305-{boot}.0123456789abcdef"),
        "offbox-pam01-system-20200101T000000Z-0123abcd.obx".to_string(),
        "offbox-hsm-sim-b-system-20200101T000000Z-0123abcd.obx".to_string(),
        "offbox-hsm_2esim-system-20200101T000000Z-0123abcd.obx".to_string(),
        "offbox-hsm-sim-system-garbage.obx".to_string(),
        "offbox-hsm-sim-system-20200230T000000Z-0123abcd.obx".to_string(),
        "offbox-hsm-sim-system-20200101T000000Z-0123ABCD.obx".to_string(),
        "offbox-hsm-sim-system-20200101T000000Z-0123abcd.obx.part".to_string(),
    ];
    for f in untouchable.iter().chain([&dead, &old_mine]) {
        std::fs::write(data.join(f), b"x").unwrap();
    }
    let out = backup_to(sim, src, url);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("removed 1 stale temporary file(s)"), "{err}");
    assert!(
        err.contains(&format!("removed the leftover {dead}")),
        "{err}"
    );
    assert!(err.contains("kept the temporary"), "{err}");
    assert!(!data.join(&dead).exists());
    let plan = sim.ok(&["prune", "--to", url, "--keep-last", "1"]);
    let plan = String::from_utf8_lossy(&plan).into_owned();
    assert!(plan.contains(&format!("deleted\t{old_mine}")), "{plan}");
    assert_eq!(plan.matches("deleted").count(), 1, "{plan}");
    assert!(!data.join(&old_mine).exists());
    assert!(
        data.join(secrets).exists(),
        "the newest secrets archive is kept"
    );
    for f in &untouchable {
        assert!(data.join(f).exists(), "{f} was deleted");
    }
}
