//! The incremental video backup on a real target (the test bed's OpenSSH server) with a
//! real SoftHSM token: a chain of runs with additions, changes, deletions and renames,
//! every point restored byte-exact with its mtimes; the catalogue deleted or damaged and
//! rebuilt from the target; files still being written skipped then picked up; a run killed
//! mid-upload; chain-aware prune; a tampered archive in the middle of a chain; the opt-in.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{pattern, stderr, Sim};
use tb::{finals, keep_targets, temps, Testbed};

const TARGET: &str = "testbed-ssh";

/// A simulator with the bed's ssh target and `[videos]` over `rec`.
fn setup(settle: u64) -> (Sim, Testbed, PathBuf) {
    let tb = Testbed::up();
    let sim = Sim::new();
    let rec = sim.dir.path().join("recordings");
    fs::create_dir_all(&rec).unwrap();
    tb.attach(&sim, |t| {
        format!(
            "[videos]\nenabled = true\nsources = [\"{}\"]\nsettle_secs = {settle}\nexclude = [\"*.part\"]\n\n{}",
            rec.display(),
            keep_targets(t, "targets.testbed-")
        )
    });
    (sim, tb, rec)
}

/// Writes `data` to `rec/rel` with an mtime `age` seconds in the past.
fn put(rec: &Path, rel: &str, data: &[u8], age: u64) {
    let p = rec.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    age_file(&p, age);
}

fn age_file(p: &Path, age: u64) {
    let t = SystemTime::now() - Duration::from_secs(age);
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Every file under `root`: relative path -> (content, mtime seconds and nanoseconds).
type Snapshot = BTreeMap<String, (Vec<u8>, i64, i64)>;

fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                out.insert(
                    rel,
                    (fs::read(e.path()).unwrap(), m.mtime(), m.mtime_nsec()),
                );
            }
        }
    }
    out
}

/// One run; returns its JSON summary.
fn run(sim: &Sim, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--json", "backup", "create", "--kind", "videos", "--to", TARGET,
    ];
    args.extend_from_slice(extra);
    let out = sim.run(&args);
    assert!(out.status.success(), "video run failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Restores point `at` (None: newest) into a fresh directory; returns the recordings
/// directory inside it, or the failed output.
fn restore(sim: &Sim, at: Option<&str>, rec: &Path) -> Result<PathBuf, std::process::Output> {
    let to = sim.dir.path().join(format!("restore-{}", rand_suffix()));
    let mut args = vec!["restore", "--kind", "videos", "--from", TARGET, "--to"];
    let to_s = to.display().to_string();
    args.push(&to_s);
    if let Some(a) = at {
        args.extend_from_slice(&["--at", a]);
    }
    let out = sim.run(&args);
    if !out.status.success() {
        return Err(out);
    }
    Ok(to.join(rec.strip_prefix("/").unwrap()))
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn catalogue(sim: &Sim) -> PathBuf {
    sim.path()
        .join("state/videos")
        .join(format!("{TARGET}.catalogue"))
}

fn archives(tb: &Testbed) -> Vec<String> {
    finals(&tb.files("SSH_DATA_DIR"))
        .into_iter()
        .filter(|n| n.contains("-videos-"))
        .cloned()
        .collect()
}

#[test]
fn chain_of_runs_restores_every_point_and_survives_lost_catalogue() {
    let (sim, tb, rec) = setup(30);
    // Run 1 (full): three recordings in date folders, one being written, one excluded.
    put(&rec, "2026/11/30/a.mp4", &pattern(300_000, 1), 3600);
    put(&rec, "2026/11/30/b.mp4", &pattern(200_000, 2), 3600);
    put(&rec, "2026/12/01/c.mp4", &pattern(100_000, 3), 3600);
    put(&rec, "2026/12/01/live.mp4", &pattern(5000, 4), 0);
    put(&rec, "2026/12/01/x.part", b"partial", 3600);
    let mut points: Vec<(String, Snapshot)> = Vec::new();
    let s = run(&sim, &[]);
    assert_eq!(s["summary"]["full"], true);
    assert_eq!(s["summary"]["stored"], 3);
    assert_eq!(s["summary"]["skipped_settling"], 1, "{s}");
    let mut snap = snapshot(&rec);
    snap.remove("2026/12/01/live.mp4");
    snap.remove("2026/12/01/x.part");
    points.push((s["name"].as_str().unwrap().to_string(), snap));

    // Run 2: nothing changed but the live file settled: only it is sent.
    age_file(&rec.join("2026/12/01/live.mp4"), 3600);
    let s = run(&sim, &[]);
    assert_eq!(s["summary"]["full"], false);
    assert_eq!(s["summary"]["stored"], 1, "{s}");
    assert_eq!(s["summary"]["stored_bytes"], 5000);
    assert_eq!(s["summary"]["device_operations"], 3, "{s}");
    let mut snap = snapshot(&rec);
    snap.remove("2026/12/01/x.part");
    points.push((s["name"].as_str().unwrap().to_string(), snap));

    // Run 3: an addition, a modification (same size), a deletion, a rename.
    put(&rec, "2026/12/02/d.mp4", &pattern(70_000, 5), 3600);
    put(&rec, "2026/11/30/a.mp4", &pattern(300_000, 6), 3000);
    fs::remove_file(rec.join("2026/11/30/b.mp4")).unwrap();
    fs::rename(
        rec.join("2026/12/01/c.mp4"),
        rec.join("2026/12/02/c-renamed.mp4"),
    )
    .unwrap();
    let s = run(&sim, &[]);
    assert_eq!(s["summary"]["deleted"], 2, "{s}");
    assert_eq!(s["summary"]["stored"], 3, "{s}");
    let mut snap = snapshot(&rec);
    snap.remove("2026/12/01/x.part");
    points.push((s["name"].as_str().unwrap().to_string(), snap));

    // Run 4 without the catalogue: rebuilt from the target; nothing is sent again.
    fs::remove_file(catalogue(&sim)).unwrap();
    let s = run(&sim, &[]);
    assert_eq!(s["summary"]["stored"], 0, "{s}");
    assert!(
        s["summary"]["catalogue"]
            .as_str()
            .unwrap()
            .starts_with("rebuilt from "),
        "{s}"
    );
    assert_eq!(s["summary"]["device_operations"], 4, "{s}");
    points.push((s["name"].as_str().unwrap().to_string(), points[2].1.clone()));

    // Run 5 with a damaged catalogue: detected, rebuilt, nothing re-sent.
    let mut b = fs::read(catalogue(&sim)).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    fs::write(catalogue(&sim), &b).unwrap();
    put(&rec, "2026/12/02/e.mp4", &pattern(1234, 7), 3600);
    let s = run(&sim, &[]);
    assert_eq!(s["summary"]["stored"], 1, "{s}");
    assert!(
        s["summary"]["catalogue"]
            .as_str()
            .unwrap()
            .contains("checksum does not match"),
        "{s}"
    );
    let mut snap = snapshot(&rec);
    snap.remove("2026/12/01/x.part");
    points.push((s["name"].as_str().unwrap().to_string(), snap));

    // Every point restores exactly as it was, mtimes included.
    for (name, snap) in &points {
        let got = restore(&sim, Some(name), &rec).unwrap_or_else(|o| panic!("{}", stderr(&o)));
        assert_eq!(&snapshot(&got), snap, "point {name}");
    }
    // The default is the newest point; --only restores a subset.
    let got = restore(&sim, None, &rec).unwrap();
    assert_eq!(&snapshot(&got), &points[4].1);
    let to = sim.dir.path().join("only");
    let out = sim.run(&[
        "restore",
        "--kind",
        "videos",
        "--from",
        TARGET,
        "--to",
        to.to_str().unwrap(),
        "--only",
        "*.mp4",
        "--only",
        &format!("{}/2026/12/02", rec.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // backup list shows the chain.
    let out = sim.ok(&["backup", "list", "--to", TARGET]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("(5 archive(s)"), "{text}");
    assert!(
        text.contains("  full\t") && text.contains("  +4\t"),
        "{text}"
    );

    // Prune keeping only the newest point keeps what it needs, and every kept point restores.
    // "Within 0 days" keeps what is not older than now: first let the clock pass the
    // points' stamps (a run in the same second as the one before it is stamped a second
    // later, so on a fast machine the newest ones can be ahead of the clock).
    wait_past(&points[4].0);
    let out = sim.ok(&["prune", "--to", TARGET, "--keep-within", "0", "--dry-run"]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("would delete"), "{text}");
    assert_eq!(archives(&tb).len(), 5);
    sim.ok(&["prune", "--to", TARGET, "--keep-within", "0"]);
    let left = archives(&tb);
    // Kept: run 5 (the newest point), runs 2 and 3 (its recordings' bytes), the full (a
    // dependency of runs 2 and 3, whose manifests stay); run 4 stored nothing and goes.
    assert!(left.contains(&points[0].0), "{left:?}");
    assert!(
        left.contains(&points[1].0) && left.contains(&points[2].0),
        "{left:?}"
    );
    assert!(
        !left.contains(&points[3].0),
        "run 4 stored nothing and is no longer a kept point: {left:?}"
    );
    let got = restore(&sim, None, &rec).unwrap();
    assert_eq!(&snapshot(&got), &points[4].1);
    // The archives kept because a kept point needs them are whole points too: their own
    // dependencies were kept with them.
    for (name, snap) in points.iter().take(3) {
        let got = restore(&sim, Some(name), &rec).unwrap_or_else(|o| panic!("{}", stderr(&o)));
        assert_eq!(&snapshot(&got), snap, "point {name} after prune");
    }
    // The pruned point is gone, and said so.
    let out = restore(&sim, Some(&points[3].0), &rec).unwrap_err();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is neither a video archive on the target"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tampered_archive_fails_only_the_points_that_need_it_and_killed_run_is_redone() {
    let (sim, tb, rec) = setup(0);
    put(&rec, "a.mp4", &pattern(200_000, 1), 3600);
    let full = run(&sim, &[])["name"].as_str().unwrap().to_string();
    put(&rec, "b.mp4", &pattern(1000, 2), 3600);
    let incr = run(&sim, &[])["name"].as_str().unwrap().to_string();
    // A new chain.
    let s = run(&sim, &["--full"]);
    assert_eq!(s["summary"]["full"], true);
    assert_eq!(s["summary"]["full_reason"], "--full was given");
    let second = s["name"].as_str().unwrap().to_string();

    // Flip a byte in the middle of the first full.
    let p = Path::new(tb.get("SSH_DATA_DIR")).join(&full);
    let mut b = fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    fs::write(&p, &b).unwrap();
    let out = restore(&sim, Some(&incr), &rec).unwrap_err();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("needs archive {full}, which failed")),
        "{}",
        stderr(&out)
    );
    // The other chain's point does not need it.
    let got = restore(&sim, Some(&second), &rec).unwrap();
    assert_eq!(snapshot(&got), snapshot(&rec));

    // A run killed mid-upload publishes nothing and leaves the catalogue as it was; the
    // next run sends the new recording.
    let before = fs::read(catalogue(&sim)).unwrap();
    put(&rec, "big.mp4", &pattern(48 << 20, 3), 3600);
    let mut child = sim
        .cmd(&["backup", "create", "--kind", "videos", "--to", TARGET])
        .spawn()
        .unwrap();
    assert!(tb::wait_for(30, || !temps(&tb.files("SSH_DATA_DIR")).is_empty()));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(archives(&tb).len(), 3);
    assert_eq!(fs::read(catalogue(&sim)).unwrap(), before);
    let s = run(&sim, &[]);
    assert_eq!(s["summary"]["stored"], 1, "{s}");
    assert_eq!(s["summary"]["stored_bytes"], 48 << 20);
    assert!(temps(&tb.files("SSH_DATA_DIR")).is_empty());
}

/// The manifest is read from the archive's end on every transport (each seeks in its own
/// way): a lost catalogue is rebuilt from NFS and SMB as from SSH, and the point restores.
#[test]
fn catalogue_rebuilds_from_the_tail_on_nfs_and_smb() {
    let (sim, _tb, rec) = setup(0);
    put(&rec, "a/one.mp4", &pattern(300_000, 1), 3600);
    put(&rec, "b/two.mp4", &pattern(5_000_000, 2), 3600);
    for target in ["testbed-nfs", "testbed-smb"] {
        let args = [
            "--json", "backup", "create", "--kind", "videos", "--to", target,
        ];
        let out = sim.run(&args);
        assert!(out.status.success(), "{target}: {}", stderr(&out));
        let cat = sim.path().join(format!("state/videos/{target}.catalogue"));
        fs::remove_file(&cat).unwrap();
        let out = sim.run(&args);
        assert!(out.status.success(), "{target}: {}", stderr(&out));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(s["summary"]["stored"], 0, "{target}: {s}");
        assert!(
            s["summary"]["catalogue"]
                .as_str()
                .unwrap()
                .starts_with("rebuilt from "),
            "{target}: {s}"
        );
        let to = sim.dir.path().join(format!("restore-{target}"));
        let out = sim.run(&[
            "restore",
            "--kind",
            "videos",
            "--from",
            target,
            "--to",
            to.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{target}: {}", stderr(&out));
        assert_eq!(
            snapshot(&to.join(rec.strip_prefix("/").unwrap())),
            snapshot(&rec),
            "{target}"
        );
    }
}

#[test]
fn disabled_video_backup_refuses_and_names_the_setting() {
    let (sim, _tb, _rec) = setup(0);
    sim.edit_config(|c| c.replace("[videos]\nenabled = true", "[videos]\nenabled = false"));
    let out = sim.run(&["backup", "create", "--kind", "videos", "--to", TARGET]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Set [videos] enabled = true"),
        "{}",
        stderr(&out)
    );
}

/// Waits until the UTC clock is past the stamp (`YYYYMMDDTHHMMSSZ`) in an archive's name.
fn wait_past(name: &str) {
    let stamp = name
        .split(['-', '.'])
        .find(|p| p.len() == 16 && p.as_bytes()[8] == b'T' && p.ends_with('Z'))
        .unwrap_or_else(|| panic!("no time stamp in {name}"));
    loop {
        let out = std::process::Command::new("date")
            .args(["-u", "+%Y%m%dT%H%M%SZ"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() > stamp {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
