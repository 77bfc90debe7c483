//! The NFS target (NFSv3, userspace client) against a real NFS-Ganesha with rpcbind in a
//! network namespace (tests/testbed/nfs.sh): round trip, publish atomicity when offbox or
//! the server dies mid-stream, a full target, an export that refuses this host, an
//! unreachable server, and `target check`.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::process::Command;

use common::{repo, stderr};
use tb::{backup_to, finals, list, setup, source, temps, Remote};

const NFS: Remote = Remote {
    target: "testbed-nfs",
    data_dir_key: "NFS_DATA_DIR",
    small_dir_key: "NFS_SMALL_DIR",
    scheme: "nfs://",
    shown_url: "nfs://",
};

#[test]
fn round_trip_list_restore_verify_check_prune() {
    let (sim, tb) = setup();
    let src = source(&sim, 3);
    // The target is a subdirectory of the export; the server holds exactly the archive.
    let (_, names) = NFS.first_backup(&sim, &tb, &src);
    NFS.restore_and_verify(&sim, &src, &names[0]);
    // The URL works as well as the name.
    assert_eq!(list(&sim, tb.get("NFS_URL")), names);

    // target check: latency and free space (FSSTAT of the 256 MiB tmpfs).
    let text = NFS.check_ok(&sim, &tb);
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
        finals(&tb.files(NFS.data_dir_key)).len(),
        1,
        "the probe is gone"
    );

    NFS.second_backup_and_prune(&sim, &tb, &src, &names[0]);
}

#[test]
fn killed_offbox_leaves_no_archive_and_next_run_cleans() {
    NFS.killed_offbox_leaves_no_archive_and_next_run_cleans();
}

#[test]
fn killed_server_leaves_no_archive_and_next_run_cleans() {
    let (sim, tb) = setup();
    let err = NFS.killed_server_fails_cleanly(&sim, &tb, |tb| {
        let st = Command::new("kill")
            .args(["-9", tb.get("GANESHA_PID")])
            .status()
            .unwrap();
        assert!(st.success());
    });
    assert!(
        err.contains("cannot reach") || err.contains("timed out"),
        "a lost server is a retryable error: {err}"
    );
    let files = tb.files(NFS.data_dir_key);
    assert_eq!(temps(&files).len(), 1, "{files:?}");

    // While the server is down, check says so.
    let out = sim.run(&["target", "check", NFS.target]);
    assert_eq!(out.status.code(), Some(75));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));

    let st = Command::new(repo().join("tests/testbed/nfs.sh"))
        .arg("restart-ganesha")
        .arg(tb.path())
        .status()
        .unwrap();
    assert!(st.success(), "ganesha did not restart");
    NFS.next_run_succeeds_and_cleans(&sim, &tb);
}

#[test]
fn full_target_is_a_clear_error() {
    let err = NFS.full_target_is_a_clear_error();
    assert!(err.contains("NFS3ERR_NOSPC"), "{err}");
}

#[test]
fn refused_export_and_unreachable_server_are_clear_errors() {
    let (sim, tb) = setup();
    // An export whose client list does not contain this host: MNT3ERR_ACCES.
    let out = sim.run(&["target", "check", "testbed-nfs-denied"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("MNT3ERR_ACCES"), "{err}");
    assert!(err.contains("does not allow this host"), "{err}");
    assert!(err.contains("client list"), "says what to do: {err}");
    let src = source(&sim, 1);
    let out = backup_to(&sim, &src, "testbed-nfs-denied");
    assert_eq!(out.status.code(), Some(69));
    assert!(stderr(&out).contains("does not allow this host"));

    // A port where nothing listens: unreachable, retry may help.
    let remote = tb.get("TESTBED_REMOTE");
    let url = format!("nfs://{remote}:2050/offbox?mountport=2050");
    let out = sim.run(&["target", "check", &url]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
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
