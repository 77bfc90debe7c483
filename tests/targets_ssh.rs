//! The SSH target against a real OpenSSH sshd in a network namespace (tests/testbed):
//! round trip, publish atomicity when offbox or the server dies mid-stream, a full target,
//! wrong credentials, an unpinned or changed host key, and a server using this appliance's
//! own host key.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::io::Write;
use std::process::{Child, Stdio};
use std::sync::mpsc;

use common::{pattern, stderr, Sim};
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
    let out = backup_to(&sim, &src, "testbed-ssh");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("published to ssh://offbox-tb@"), "{err}");
    let names = list(&sim, "testbed-ssh");
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("offbox-hsm-sim-system-"), "{names:?}");
    assert_eq!(finals(&tb.files("SSH_DATA_DIR")), vec![&names[0]]);

    // Restore and verify straight from the target, byte-exact.
    let dest = sim.dir.path().join("restored");
    sim.ok(&[
        "restore",
        "--from",
        "testbed-ssh",
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
    let v = sim.ok(&["verify", "--from", "testbed-ssh", &names[0]]);
    assert!(String::from_utf8_lossy(&v).contains("verify OK"));
    // The URL works as well as the name.
    let url = tb.get("SSH_URL").to_string();
    assert_eq!(list(&sim, &url), names);

    // target check: latency and free space.
    let out = sim.run(&["target", "check", "testbed-ssh"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("OK") && text.contains("free=") && text.contains("connect="),
        "{text}"
    );

    // A second archive, then prune keeps the newest only.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(backup_to(&sim, &src, "testbed-ssh").status.success());
    assert_eq!(list(&sim, "testbed-ssh").len(), 2);
    let dry = sim.ok(&[
        "prune",
        "--to",
        "testbed-ssh",
        "--keep-last",
        "1",
        "--dry-run",
    ]);
    assert!(String::from_utf8_lossy(&dry).contains(&format!("would delete\t{}", names[0])));
    assert_eq!(
        list(&sim, "testbed-ssh").len(),
        2,
        "dry run deletes nothing"
    );
    sim.ok(&["prune", "--to", "testbed-ssh", "--keep-last", "1"]);
    let left = list(&sim, "testbed-ssh");
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
            "testbed-ssh",
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
    let dir = tb.get("SSH_DATA_DIR").to_string();
    let has_data = wait_for(30, || {
        std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(".offbox-tmp.")
                && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
        })
    });
    assert!(
        has_data,
        "the upload never started: {:?}",
        tb.files("SSH_DATA_DIR")
    );
    (child, tx)
}

fn next_run_succeeds_and_cleans(sim: &Sim, tb: &Testbed) {
    let src = source(sim, 1);
    let out = backup_to(sim, &src, "testbed-ssh");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("removed the leftover .offbox-tmp."), "{err}");
    let files = tb.files("SSH_DATA_DIR");
    assert_eq!(temps(&files).len(), 0, "{files:?}");
    assert_eq!(finals(&files).len(), 1, "{files:?}");
}

#[test]
fn killed_offbox_leaves_no_archive_and_next_run_cleans() {
    let (sim, tb) = setup();
    let (mut child, _tx) = start_stalled_upload(&sim, &tb);
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let files = tb.files("SSH_DATA_DIR");
    assert!(finals(&files).is_empty(), "{files:?}");
    assert_eq!(temps(&files).len(), 1, "{files:?}");
    next_run_succeeds_and_cleans(&sim, &tb);
}

#[test]
fn killed_server_leaves_no_archive_and_next_run_cleans() {
    let (sim, tb) = setup();
    let (child, tx) = start_stalled_upload(&sim, &tb);
    let sessions = tb.ssh_session_pids();
    assert!(!sessions.is_empty());
    for p in &sessions {
        let _ = std::process::Command::new("kill").args(["-9", p]).status();
    }
    let _ = tx.send(());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ssh://"), "the error names the target: {err}");
    let files = tb.files("SSH_DATA_DIR");
    assert!(finals(&files).is_empty(), "{files:?}");
    next_run_succeeds_and_cleans(&sim, &tb);
}

#[test]
fn full_target_is_a_clear_error() {
    let (sim, tb) = setup();
    let src = source(&sim, 6); // incompressible, on a 2 MiB tmpfs
    let out = backup_to(&sim, &src, "testbed-ssh-small");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the target is full"), "{err}");
    assert!(err.contains("offbox prune"), "{err}");
    let files = tb.files("SSH_SMALL_DIR");
    assert!(files.is_empty(), "nothing left behind: {files:?}");
}

#[test]
fn wrong_key_is_refused_with_guidance() {
    let (sim, tb) = setup();
    let other = sim.dir.path().join("other_id");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    sim.edit_config(|c| {
        c.replace(
            &format!("ssh_identity = \"{}\"", tb.get("SSH_IDENTITY")),
            &format!("ssh_identity = \"{}\"", other.display()),
        )
    });
    let out = sim.run(&["target", "check", "testbed-ssh"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("authentication as offbox-tb failed"), "{err}");
    assert!(err.contains("authorized_keys"), "{err}");
    // A missing key says how to make one.
    sim.edit_config(|c| c.replace(&other.display().to_string(), "/nonexistent/id"));
    let err = stderr(&sim.run(&["target", "check", "testbed-ssh"]));
    assert!(err.contains("offbox target ssh-key"), "{err}");
}

#[test]
fn unpinned_host_key_fails_until_accepted() {
    let (sim, tb) = setup();
    let kh = sim.dir.path().join("known_hosts");
    sim.edit_config(|c| {
        c.replace(
            &format!("known_hosts = \"{}\"", tb.get("SSH_KNOWN_HOSTS")),
            &format!("known_hosts = \"{}\"", kh.display()),
        )
    });
    let src = source(&sim, 1);
    let out = backup_to(&sim, &src, "testbed-ssh");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not pinned"), "{err}");
    let fp = err
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap()
        .trim_end_matches(['.', ',', ')'])
        .to_string();
    assert!(finals(&tb.files("SSH_DATA_DIR")).is_empty());
    // Without --fingerprint: shows it, pins nothing.
    let out = sim.run(&["target", "accept-host-key", "testbed-ssh"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&fp), "{}", stderr(&out));
    assert!(!kh.exists());
    // A wrong fingerprint pins nothing.
    let out = sim.run(&[
        "target",
        "accept-host-key",
        "testbed-ssh",
        "--fingerprint",
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]);
    assert!(!out.status.success());
    assert!(!kh.exists());
    sim.ok(&[
        "target",
        "accept-host-key",
        "testbed-ssh",
        "--fingerprint",
        &fp,
    ]);
    let out = backup_to(&sim, &src, "testbed-ssh");
    assert!(out.status.success(), "{}", stderr(&out));
    // A changed key is refused loudly.
    let text = std::fs::read_to_string(&kh).unwrap();
    let mut f = text.split_whitespace();
    let (host, kt) = (f.next().unwrap(), f.next().unwrap());
    std::fs::write(
        &kh,
        format!(
            "{host} {kt} AAAAC3NzaC1lZDI1NTE5AAAAIGcMJZyLD0T1L9rUJm2dW0vD9LhYkL4W2hWl0a8KXqQX\n"
        ),
    )
    .unwrap();
    let err = stderr(&sim.run(&["target", "check", "testbed-ssh"]));
    assert!(err.contains("CHANGED"), "{err}");
}

#[test]
fn server_with_this_appliances_host_key_is_refused() {
    let own = "/etc/ssh/ssh_host_ed25519_key";
    if !std::path::Path::new(own).exists() {
        eprintln!("skipped: no {own} on this machine");
        return;
    }
    let tb = Testbed::up_with(&[("TESTBED_SSH_HOSTKEY", own)]);
    let sim = Sim::new();
    tb.attach(&sim, |t| t);
    let out = sim.run(&["target", "check", "testbed-ssh"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("SSH host key of this appliance"), "{err}");
    assert!(
        err.contains(tb.get("TESTBED_REMOTE")) || err.contains("server host key"),
        "{err}"
    );
}
