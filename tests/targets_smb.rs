//! The SMB target against a real Samba smbd in a network namespace (tests/testbed): round
//! trip, publish atomicity when offbox or the server dies mid-stream, a full target, wrong
//! credentials, a password made of the characters other products forbid (`\ & ! , ; ' "`),
//! SMB3 encryption, and `target check`.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::process::Command;

use common::stderr;
use tb::{backup_args, setup, source, Remote, Testbed};

const SMB: Remote = Remote {
    target: "testbed-smb",
    data_dir_key: "SMB_DATA_DIR",
    small_dir_key: "SMB_SMALL_DIR",
    scheme: "smb://",
    shown_url: "smb://offbox-smb@",
};

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
    let (err, names) = SMB.first_backup(&sim, &tb, &src);
    assert!(
        !err.contains(pw.trim_end_matches('\n')),
        "the password leaked: {err}"
    );
    SMB.restore_and_verify(&sim, &src, &names[0]);
    // The archive on the server is the one that was read back.
    let on_server =
        std::fs::metadata(std::path::Path::new(tb.get(SMB.data_dir_key)).join(&names[0])).unwrap();
    assert!(on_server.len() > 3 << 20);
    // target check: latency and free space (the 256 MiB tmpfs).
    SMB.check_ok(&sim, &tb);
    SMB.second_backup_and_prune(&sim, &tb, &src, &names[0]);
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
    let out = run(&[("TB_SMB_PW", pw)], &["target", "check", SMB.target]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The same password with one character less is refused: nothing was trimmed or
    // reinterpreted on the way.
    let cut = &pw[..pw.len() - 1];
    let out = run(&[("TB_SMB_PW", cut)], &["target", "check", SMB.target]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(stderr(&out).contains("authentication as offbox-smb failed"));
}

#[test]
fn killed_offbox_leaves_no_archive_and_next_run_cleans() {
    SMB.killed_offbox_leaves_no_archive_and_next_run_cleans();
}

#[test]
fn killed_server_leaves_no_archive_and_next_run_cleans() {
    let (sim, tb) = setup();
    SMB.killed_server_fails_cleanly(&sim, &tb, |tb| {
        // The session is SMB3-encrypted (the server says "desired"; the client accepts).
        let sessions = smbstatus(tb, &["-b"]);
        let line = sessions
            .lines()
            .find(|l| l.contains("offbox-smb"))
            .unwrap_or_else(|| panic!("no session in smbstatus: {sessions}"));
        assert!(
            line.contains("AES-"),
            "the session is not encrypted: {line}"
        );
        // Kill the smbd process serving this connection (smbstatus -p lists it).
        let pids: Vec<String> = smbstatus(tb, &["-p"])
            .lines()
            .filter(|l| l.contains("offbox-smb"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|p| p.chars().all(|c| c.is_ascii_digit()) && p != tb.get("SMBD_PID"))
            .collect();
        assert!(!pids.is_empty(), "{}", smbstatus(tb, &["-p"]));
        for p in &pids {
            let _ = Command::new("kill").args(["-9", p]).status();
        }
    });
    SMB.next_run_succeeds_and_cleans(&sim, &tb);
}

#[test]
fn full_target_is_a_clear_error() {
    SMB.full_target_is_a_clear_error();
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
    let out = sim.run(&["target", "check", SMB.target]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
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
    let err = stderr(&sim.run(&["target", "check", SMB.target]));
    assert!(
        err.contains("cannot read the credentials") && err.contains("/nonexistent/pw"),
        "{err}"
    );
    // With the right password, a share that does not exist.
    sim.edit_config(|c| {
        c.replace("/nonexistent/pw", tb.get("SMB_PASSWORD_FILE"))
            .replace("/data\"", "/nosuchshare\"")
    });
    let err = stderr(&sim.run(&["target", "check", SMB.target]));
    assert!(err.contains("share \"nosuchshare\""), "{err}");
    assert!(err.contains("not found"), "{err}");
    // The share exists but not the directory in it: says so, and how to make it.
    sim.edit_config(|c| c.replace("/nosuchshare\"", "/data/no/such/dir\""));
    let out = sim.run(&["target", "check", SMB.target]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains(
            ": the directory no/such/dir does not exist on the target; create it in the share"
        ),
        "{err}"
    );
    assert!(!err.contains("backup list"), "{err}");
}
