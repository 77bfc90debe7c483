//! The NFS target (NFSv3, userspace client) against a real NFS-Ganesha with rpcbind in a
//! network namespace (tests/testbed/nfs.sh): round trip, publish atomicity when offbox or
//! the server dies mid-stream, a full target, an export that refuses this host, an
//! unreachable server, and `target check`.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::{pattern, repo, stderr, Sim};
use tb::{finals, mkfifo, temps, wait_for, Testbed};

fn setup() -> (Sim, Testbed) {
    let tb = Testbed::up();
    let sim = Sim::new();
    tb.attach(&sim, |t| t);
    (sim, tb)
}

fn source(sim: &Sim, mib: usize) -> std::path::PathBuf {
    let src = sim.dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/app.conf"), b"k=v\n").unwrap();
    std::fs::write(src.join("data.bin"), pattern(mib << 20, 7)).unwrap();
    src
}

fn backup_to(sim: &Sim, src: &std::path::Path, to: &str) -> std::process::Output {
    sim.run(&[
        "backup",
        "create",
        "--kind",
        "system",
        "--source",
        src.to_str().unwrap(),
        "--to",
        to,
    ])
}

fn list(sim: &Sim, to: &str) -> Vec<String> {
    let out = sim.ok(&["backup", "list", "--to", to]);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

#[test]
fn round_trip_list_restore_verify_check_prune() {
    let (sim, tb) = setup();
    let src = source(&sim, 3);
    let out = backup_to(&sim, &src, "testbed-nfs");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("published to nfs://"), "{err}");
    let names = list(&sim, "testbed-nfs");
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("offbox-hsm-sim-system-"), "{names:?}");
    // The target is a subdirectory of the export; the server holds exactly the archive.
    assert_eq!(finals(&tb.files("NFS_DATA_DIR")), vec![&names[0]]);

    // Restore and verify straight from the target, byte-exact.
    let dest = sim.dir.path().join("restored");
    sim.ok(&[
        "restore",
        "--from",
        "testbed-nfs",
        &names[0],
        "--to",
        dest.to_str().unwrap(),
    ]);
    let back = dest.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(back.join("data.bin")).unwrap(),
        std::fs::read(src.join("data.bin")).unwrap()
    );
    assert_eq!(std::fs::read(back.join("etc/app.conf")).unwrap(), b"k=v\n");
    let v = sim.ok(&["verify", "--from", "testbed-nfs", &names[0]]);
    assert!(String::from_utf8_lossy(&v).contains("verify OK"));
    // The URL works as well as the name.
    let url = tb.get("NFS_URL").to_string();
    assert_eq!(list(&sim, &url), names);

    // target check: latency and free space (FSSTAT of the 256 MiB tmpfs).
    let out = sim.run(&["target", "check", "testbed-nfs"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("testbed-nfs OK")
            && text.contains("url=nfs://")
            && text.contains("connect=")
            && text.contains("probe="),
        "{text}"
    );
    let free = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("free="))
        .unwrap_or_else(|| panic!("no free= in {text}"));
    let free: f64 = free.parse().unwrap();
    assert!(text.contains(" MiB recommended="), "{text}");
    assert!(
        free > 200.0 && free <= 256.0,
        "about the 256 MiB tmpfs: {text}"
    );
    assert_eq!(
        finals(&tb.files("NFS_DATA_DIR")).len(),
        1,
        "the probe is gone"
    );
    assert!(temps(&tb.files("NFS_DATA_DIR")).is_empty());

    // A second archive, then prune keeps the newest only.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(backup_to(&sim, &src, "testbed-nfs").status.success());
    assert_eq!(list(&sim, "testbed-nfs").len(), 2);
    let dry = sim.ok(&[
        "prune",
        "--to",
        "testbed-nfs",
        "--keep-last",
        "1",
        "--dry-run",
    ]);
    assert!(String::from_utf8_lossy(&dry).contains(&format!("would delete\t{}", names[0])));
    assert_eq!(
        list(&sim, "testbed-nfs").len(),
        2,
        "dry run deletes nothing"
    );
    sim.ok(&["prune", "--to", "testbed-nfs", "--keep-last", "1"]);
    let left = list(&sim, "testbed-nfs");
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], names[0]);
}

/// Spawns a secrets backup reading a FIFO, feeds it 4 MiB, and waits until the temporary
/// file on the server has data. Returns the child and the channel that lets the feeder
/// write the rest and close.
fn start_stalled_upload(sim: &Sim, tb: &Testbed) -> (Child, mpsc::Sender<()>) {
    let fifo = sim.dir.path().join("export.fifo");
    mkfifo(&fifo);
    let child = sim
        .cmd(&[
            "backup",
            "create",
            "--kind",
            "secrets",
            "--source",
            fifo.to_str().unwrap(),
            "--to",
            "testbed-nfs",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        if f.write_all(&pattern(4 << 20, 3)).is_err() {
            return;
        }
        let _ = rx.recv();
        let _ = f.write_all(&pattern(4 << 20, 4));
    });
    let dir = tb.get("NFS_DATA_DIR").to_string();
    let has_data = wait_for(30, || {
        std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(".offbox-tmp.")
                && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
        })
    });
    assert!(
        has_data,
        "the upload never started: {:?}",
        tb.files("NFS_DATA_DIR")
    );
    (child, tx)
}

fn next_run_succeeds_and_cleans(sim: &Sim, tb: &Testbed) {
    let src = source(sim, 1);
    let out = backup_to(sim, &src, "testbed-nfs");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("removed the leftover .offbox-tmp."), "{err}");
    let files = tb.files("NFS_DATA_DIR");
    assert_eq!(temps(&files).len(), 0, "{files:?}");
    assert_eq!(finals(&files).len(), 1, "{files:?}");
}

#[test]
fn killed_offbox_leaves_no_archive_and_next_run_cleans() {
    let (sim, tb) = setup();
    let (mut child, _tx) = start_stalled_upload(&sim, &tb);
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let files = tb.files("NFS_DATA_DIR");
    assert!(finals(&files).is_empty(), "{files:?}");
    assert_eq!(temps(&files).len(), 1, "{files:?}");
    next_run_succeeds_and_cleans(&sim, &tb);
}

#[test]
fn killed_server_leaves_no_archive_and_next_run_cleans() {
    let (sim, tb) = setup();
    let (child, tx) = start_stalled_upload(&sim, &tb);
    let st = Command::new("kill")
        .args(["-9", tb.get("GANESHA_PID")])
        .status()
        .unwrap();
    assert!(st.success());
    let _ = tx.send(());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nfs://"), "the error names the target: {err}");
    assert!(
        err.contains("cannot reach") || err.contains("timed out"),
        "a lost server is a retryable error: {err}"
    );
    let files = tb.files("NFS_DATA_DIR");
    assert!(finals(&files).is_empty(), "{files:?}");
    assert_eq!(temps(&files).len(), 1, "{files:?}");

    // While the server is down, check says so.
    let out = sim.run(&["target", "check", "testbed-nfs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));

    let st = Command::new(repo().join("tests/testbed/nfs.sh"))
        .arg("restart-ganesha")
        .arg(tb.path())
        .status()
        .unwrap();
    assert!(st.success(), "ganesha did not restart");
    next_run_succeeds_and_cleans(&sim, &tb);
}

#[test]
fn full_target_is_a_clear_error() {
    let (sim, tb) = setup();
    let src = source(&sim, 6); // incompressible, on a 2 MiB tmpfs
    let out = backup_to(&sim, &src, "testbed-nfs-small");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the target is full"), "{err}");
    assert!(err.contains("NFS3ERR_NOSPC"), "{err}");
    assert!(err.contains("offbox prune"), "{err}");
    let files = tb.files("NFS_SMALL_DIR");
    assert!(files.is_empty(), "nothing left behind: {files:?}");
}

#[test]
fn refused_export_and_unreachable_server_are_clear_errors() {
    let (sim, tb) = setup();
    // An export whose client list does not contain this host: MNT3ERR_ACCES.
    let out = sim.run(&["target", "check", "testbed-nfs-denied"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("MNT3ERR_ACCES"), "{err}");
    assert!(err.contains("does not allow this host"), "{err}");
    assert!(err.contains("client list"), "says what to do: {err}");
    let src = source(&sim, 1);
    let out = backup_to(&sim, &src, "testbed-nfs-denied");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not allow this host"));

    // A port where nothing listens: unreachable, retry may help.
    let remote = tb.get("TESTBED_REMOTE");
    let url = format!("nfs://{remote}:2050/offbox?mountport=2050");
    let out = sim.run(&["target", "check", &url]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert!(err.contains("retry"), "{err}");

    // A directory that does not exist in the export.
    let url = format!("nfs://{remote}/offbox/missing?mountport=20048");
    let err = stderr(&sim.run(&["target", "check", &url]));
    assert!(
        err.contains("missing") && err.contains("does not exist"),
        "{err}"
    );

    // The guard runs first: loopback spellings are refused before any connection.
    let err = stderr(&sim.run(&["target", "check", "nfs://0x7f.1/offbox"]));
    assert!(err.contains("it is this appliance"), "{err}");
    assert!(err.contains("loopback"), "{err}");
}
