//! The SMB target against a real Samba smbd in a network namespace (tests/testbed): round
//! trip, publish atomicity when offbox or the server dies mid-stream, a full target, wrong
//! credentials, a password made of the characters other products forbid (`\ & ! , ; ' "`),
//! SMB3 encryption, and `target check`.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::io::Write;
use std::process::{Child, Command, Stdio};
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

fn backup_args<'a>(src: &'a str, to: &'a str) -> Vec<&'a str> {
    vec![
        "backup", "create", "--kind", "system", "--source", src, "--to", to,
    ]
}

fn backup_to(sim: &Sim, src: &std::path::Path, to: &str) -> std::process::Output {
    sim.run(&backup_args(src.to_str().unwrap(), to))
}

fn list(sim: &Sim, to: &str) -> Vec<String> {
    let out = sim.ok(&["backup", "list", "--to", to]);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

/// `smbstatus` against the test bed's smbd (reads its lock directory; no network).
fn smbstatus(tb: &Testbed, args: &[&str]) -> String {
    let out = Command::new("smbstatus")
        .arg("-s")
        .arg(tb.get("SMB_CONF"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn round_trip_list_restore_verify_check_prune() {
    let (sim, tb) = setup();
    // The test bed's password holds every character the seeds' product forbids.
    let pw = std::fs::read_to_string(tb.get("SMB_PASSWORD_FILE")).unwrap();
    for c in ['\\', '&', '!', ',', ';', '\'', '"', '$', '%', ' '] {
        assert!(pw.contains(c), "the test bed password lacks {c:?}");
    }
    let src = source(&sim, 3);
    let out = backup_to(&sim, &src, "testbed-smb");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("published to smb://offbox-smb@"), "{err}");
    assert!(
        !err.contains(pw.trim_end_matches('\n')),
        "the password leaked: {err}"
    );
    let names = list(&sim, "testbed-smb");
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("offbox-hsm-sim-system-"), "{names:?}");
    let files = tb.files("SMB_DATA_DIR");
    assert_eq!(finals(&files), vec![&names[0]], "{files:?}");
    assert!(temps(&files).is_empty(), "{files:?}");

    // Restore and verify straight from the target, byte-exact.
    let dest = sim.dir.path().join("restored");
    sim.ok(&[
        "restore",
        "--from",
        "testbed-smb",
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
    let v = sim.ok(&["verify", "--from", "testbed-smb", &names[0]]);
    assert!(String::from_utf8_lossy(&v).contains("verify OK"));
    // The archive on the server is the one that was read back.
    let on_server =
        std::fs::metadata(std::path::Path::new(tb.get("SMB_DATA_DIR")).join(&names[0])).unwrap();
    assert!(on_server.len() > 3 << 20);

    // target check: latency and free space (the 256 MiB tmpfs).
    let out = sim.run(&["target", "check", "testbed-smb"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("OK") && text.contains("free=") && text.contains("connect="),
        "{text}"
    );
    assert!(text.contains("url=smb://offbox-smb@"), "{text}");
    assert!(temps(&tb.files("SMB_DATA_DIR")).is_empty());

    // A second archive, then prune keeps the newest only.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(backup_to(&sim, &src, "testbed-smb").status.success());
    assert_eq!(list(&sim, "testbed-smb").len(), 2);
    sim.ok(&["prune", "--to", "testbed-smb", "--keep-last", "1"]);
    let left = list(&sim, "testbed-smb");
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], names[0]);
    assert_eq!(finals(&tb.files("SMB_DATA_DIR")).len(), 1);
}

#[test]
fn special_character_password_from_the_environment_and_a_url() {
    let (sim, tb) = setup();
    let pw = std::fs::read_to_string(tb.get("SMB_PASSWORD_FILE")).unwrap();
    let pw = pw.strip_suffix('\n').unwrap();
    let url = tb.get("SMB_URL").to_string();
    let src = source(&sim, 1);
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = sim.cmd(args);
        c.env_remove("OFFBOX_TARGET_PASSWORD")
            .env_remove("OFFBOX_TARGET_PASSWORD_FILE");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // A URL on the command line, the password in $OFFBOX_TARGET_PASSWORD, as is.
    let out = run(
        &[("OFFBOX_TARGET_PASSWORD", pw)],
        &backup_args(src.to_str().unwrap(), &url),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // ... and in $OFFBOX_TARGET_PASSWORD_FILE.
    let out = run(
        &[("OFFBOX_TARGET_PASSWORD_FILE", tb.get("SMB_PASSWORD_FILE"))],
        &["backup", "list", "--to", &url],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // password_env in the config.
    sim.edit_config(|c| {
        c.replace(
            &format!("password_file = \"{}\"", tb.get("SMB_PASSWORD_FILE")),
            "password_env = \"TB_SMB_PW\"",
        )
    });
    let out = run(&[("TB_SMB_PW", pw)], &["target", "check", "testbed-smb"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The same password with one character less is refused: nothing was trimmed or
    // reinterpreted on the way.
    let cut = &pw[..pw.len() - 1];
    let out = run(&[("TB_SMB_PW", cut)], &["target", "check", "testbed-smb"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("authentication as offbox-smb failed"));
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
            "testbed-smb",
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
    let dir = tb.get("SMB_DATA_DIR").to_string();
    let has_data = wait_for(30, || {
        std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(".offbox-tmp.")
                && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
        })
    });
    if !has_data {
        let files = tb.files("SMB_DATA_DIR");
        let mut child = child;
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the upload never started: {files:?}; offbox said: {}",
            stderr(&out)
        );
    }
    (child, tx)
}

fn next_run_succeeds_and_cleans(sim: &Sim, tb: &Testbed) {
    let src = source(sim, 1);
    let out = backup_to(sim, &src, "testbed-smb");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("removed the leftover .offbox-tmp."), "{err}");
    let files = tb.files("SMB_DATA_DIR");
    assert_eq!(temps(&files).len(), 0, "{files:?}");
    assert_eq!(finals(&files).len(), 1, "{files:?}");
}

#[test]
fn killed_offbox_leaves_no_archive_and_next_run_cleans() {
    let (sim, tb) = setup();
    let (mut child, _tx) = start_stalled_upload(&sim, &tb);
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let files = tb.files("SMB_DATA_DIR");
    assert!(finals(&files).is_empty(), "{files:?}");
    assert_eq!(temps(&files).len(), 1, "{files:?}");
    next_run_succeeds_and_cleans(&sim, &tb);
}

#[test]
fn killed_server_leaves_no_archive_and_next_run_cleans() {
    let (sim, tb) = setup();
    let (child, tx) = start_stalled_upload(&sim, &tb);
    // The session is SMB3-encrypted (the server says "desired"; the client accepts).
    let sessions = smbstatus(&tb, &["-b"]);
    let line = sessions
        .lines()
        .find(|l| l.contains("offbox-smb"))
        .unwrap_or_else(|| panic!("no session in smbstatus: {sessions}"));
    assert!(
        line.contains("AES-"),
        "the session is not encrypted: {line}"
    );
    // Kill the smbd process serving this connection (smbstatus -p lists it).
    let pids: Vec<String> = smbstatus(&tb, &["-p"])
        .lines()
        .filter(|l| l.contains("offbox-smb"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()) && p != tb.get("SMBD_PID"))
        .collect();
    assert!(!pids.is_empty(), "{}", smbstatus(&tb, &["-p"]));
    for p in &pids {
        let _ = Command::new("kill").args(["-9", p]).status();
    }
    let _ = tx.send(());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("smb://"), "the error names the target: {err}");
    let files = tb.files("SMB_DATA_DIR");
    assert!(finals(&files).is_empty(), "{files:?}");
    next_run_succeeds_and_cleans(&sim, &tb);
}

#[test]
fn full_target_is_a_clear_error() {
    let (sim, tb) = setup();
    let src = source(&sim, 6); // incompressible, on a 2 MiB tmpfs
    let out = backup_to(&sim, &src, "testbed-smb-small");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the target is full"), "{err}");
    assert!(err.contains("offbox prune"), "{err}");
    let files = tb.files("SMB_SMALL_DIR");
    assert!(files.is_empty(), "nothing left behind: {files:?}");
}

#[test]
fn wrong_credentials_are_refused_with_guidance() {
    let (sim, tb) = setup();
    let wrong = sim.dir.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    sim.edit_config(|c| {
        c.replace(
            &format!("password_file = \"{}\"", tb.get("SMB_PASSWORD_FILE")),
            &format!("password_file = \"{}\"", wrong.display()),
        )
    });
    let out = sim.run(&["target", "check", "testbed-smb"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("authentication as offbox-smb failed"), "{err}");
    assert!(err.contains("STATUS_LOGON_FAILURE"), "{err}");
    assert!(err.contains(&wrong.display().to_string()), "{err}");
    assert!(err.contains("Retrying will not help"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password leaked: {err}"
    );
    // A missing password file says so.
    sim.edit_config(|c| c.replace(&wrong.display().to_string(), "/nonexistent/pw"));
    let err = stderr(&sim.run(&["target", "check", "testbed-smb"]));
    assert!(
        err.contains("cannot read the credentials") && err.contains("/nonexistent/pw"),
        "{err}"
    );
    // With the right password, a share that does not exist.
    sim.edit_config(|c| {
        c.replace("/nonexistent/pw", tb.get("SMB_PASSWORD_FILE"))
            .replace("/data\"", "/nosuchshare\"")
    });
    let err = stderr(&sim.run(&["target", "check", "testbed-smb"]));
    assert!(err.contains("share \"nosuchshare\""), "{err}");
    assert!(err.contains("not found"), "{err}");
}
