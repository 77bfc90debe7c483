//! The SSH target against a real OpenSSH sshd in a network namespace (tests/testbed):
//! round trip, publish atomicity when offbox or the server dies mid-stream, a full target,
//! wrong credentials, an unpinned or changed host key, and a server using this appliance's
//! own host key.

mod common;
#[path = "common/targets.rs"]
mod tb;

use common::{stderr, Sim};
use tb::{backup_to, finals, list, setup, source, Remote, Testbed};

const SSH: Remote = Remote {
    target: "testbed-ssh",
    data_dir_key: "SSH_DATA_DIR",
    small_dir_key: "SSH_SMALL_DIR",
    scheme: "ssh://",
    shown_url: "ssh://offbox-tb@",
};

#[test]
fn round_trip_list_restore_verify_check_prune() {
    let (sim, tb) = setup();
    let src = source(&sim, 3);
    let (_, names) = SSH.first_backup(&sim, &tb, &src);
    // The archive is the backup user's alone on the server.
    let on_server = std::path::Path::new(tb.get("SSH_DATA_DIR")).join(&names[0]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&on_server).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "{}", on_server.display());
    SSH.restore_and_verify(&sim, &src, &names[0]);
    // The URL works as well as the name.
    assert_eq!(list(&sim, tb.get("SSH_URL")), names);
    // target check: latency and free space.
    SSH.check_ok(&sim, &tb);
    SSH.second_backup_and_prune(&sim, &tb, &src, &names[0]);
}

#[test]
fn killed_offbox_leaves_no_archive_and_next_run_cleans() {
    SSH.killed_offbox_leaves_no_archive_and_next_run_cleans();
}

#[test]
fn killed_server_leaves_no_archive_and_next_run_cleans() {
    let (sim, tb) = setup();
    SSH.killed_server_fails_cleanly(&sim, &tb, |tb| {
        let sessions = tb.ssh_session_pids();
        assert!(!sessions.is_empty());
        for p in &sessions {
            let _ = std::process::Command::new("kill").args(["-9", p]).status();
        }
    });
    SSH.next_run_succeeds_and_cleans(&sim, &tb);
}

#[test]
fn full_target_is_a_clear_error() {
    SSH.full_target_is_a_clear_error();
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
    let out = sim.run(&["target", "check", SSH.target]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("authentication as offbox-tb failed"), "{err}");
    assert!(err.contains("authorized_keys"), "{err}");
    // A missing key says how to make one.
    sim.edit_config(|c| c.replace(&other.display().to_string(), "/nonexistent/id"));
    let err = stderr(&sim.run(&["target", "check", SSH.target]));
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
    let out = backup_to(&sim, &src, SSH.target);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("is not pinned"), "{err}");
    let fp = err
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap()
        .trim_end_matches(['.', ',', ')'])
        .to_string();
    assert!(finals(&tb.files(SSH.data_dir_key)).is_empty());
    // Without --fingerprint: shows it, pins nothing, and is no error (print-only).
    let out = sim.run(&["target", "accept-host-key", SSH.target]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        shown.trim_end(),
        format!(
            "offbox: {} presents ssh-ed25519 {fp}; it is not pinned yet, and nothing was changed. Compare it with `ssh-keygen -lf` of that key on the server, then pin it with: offbox target accept-host-key {} --fingerprint {fp}",
            tb.get("TESTBED_REMOTE"),
            SSH.target
        )
    );
    assert!(!kh.exists());
    let out = sim.run(&["--json", "target", "accept-host-key", SSH.target]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "not_pinned");
    assert_eq!(v["fingerprint"], fp.as_str());
    assert_eq!(v["added"], false);
    assert!(!kh.exists());
    // A wrong fingerprint pins nothing.
    let out = sim.run(&[
        "target",
        "accept-host-key",
        SSH.target,
        "--fingerprint",
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]);
    assert!(!out.status.success());
    assert!(!kh.exists());
    sim.ok(&[
        "target",
        "accept-host-key",
        SSH.target,
        "--fingerprint",
        &fp,
    ]);
    let out = backup_to(&sim, &src, SSH.target);
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
    let err = stderr(&sim.run(&["target", "check", SSH.target]));
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
    let out = sim.run(&["target", "check", SSH.target]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("SSH host key of this appliance"), "{err}");
    assert!(
        err.contains(tb.get("TESTBED_REMOTE")) || err.contains("server host key"),
        "{err}"
    );
}

/// The `[targets.gone]` table of an SSH target whose directory does not exist.
fn gone_target(tb: &Testbed) -> String {
    format!(
        "\n[targets.gone]\nurl = \"{}/nonexistent/dir\"\ntimeout_secs = 10\n",
        tb.get("SSH_URL")
    )
}

#[test]
fn check_without_argument_checks_every_target_and_says_each_failure_once() {
    let (sim, tb) = setup();
    sim.edit_config(|c| c + &gone_target(&tb));
    // One target: its error once, as the command's error; no FAILED line repeats it.
    let out = sim.run(&["target", "check", "gone"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    let dir = format!("{}/nonexistent/dir", tb.get("SSH_DATA_DIR"));
    assert_eq!(
        err.trim_end(),
        format!(
            "offbox: error: connecting to the target failed: {url}/nonexistent/dir: the directory {dir} does not exist on the target; create it on the server, writable by offbox-tb (`mkdir -p {dir}` as offbox-tb, or as root followed by `chown offbox-tb {dir}`), or correct the path in the target's URL",
            url = tb.get("SSH_URL")
        )
    );
    let out = sim.run(&["--json", "target", "check", "gone"]);
    let line = stderr(&out).lines().last().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["kind"], "target.no_directory", "{line}");
    assert_eq!(v["error"]["retry"], "permanent", "{line}");

    // No argument: every configured target, each failure on its own line, once.
    let out = sim.run(&["target", "check"]);
    let (text, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(out.status.code(), Some(69), "{err}");
    for t in [
        "testbed-ssh",
        "testbed-ssh-small",
        "testbed-smb",
        "testbed-smb-small",
        "testbed-nfs",
        "testbed-nfs-small",
    ] {
        assert!(
            text.contains(&format!("offbox: target {t} OK: ")),
            "{t}: {text}"
        );
    }
    assert_eq!(
        err.matches("does not exist on the target").count(),
        1,
        "{err}"
    );
    assert!(err.contains("offbox: target gone FAILED: connecting to the target failed"));
    assert!(
        err.contains("offbox: target testbed-nfs-denied FAILED: "),
        "{err}"
    );
    assert!(!err.contains("backup list"), "{err}");
    assert!(
        err.ends_with(
            "offbox: error: target check: 2 of 8 target(s) failed (gone: target.no_directory, testbed-nfs-denied: target.credentials); see the lines above\n"
        ),
        "{err}"
    );
    // --json: one object per target on stdout, failures with their error object.
    let out = sim.run(&["--json", "target", "check"]);
    let objs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 8);
    let gone = objs.iter().find(|o| o["target"] == "gone").unwrap();
    assert_eq!(gone["error"]["kind"], "target.no_directory");
    assert_eq!(objs.iter().filter(|o| o["error"].is_null()).count(), 6);
}

#[test]
fn keyless_verify_reads_from_a_target_with_only_the_targets_section() {
    let (sim, tb) = setup();
    let src = source(&sim, 1);
    let (_, names) = SSH.first_backup(&sim, &tb, &src);
    let pem = sim.dir.path().join("signing.pem");
    sim.ok(&["keys", "export-public", "--output", pem.to_str().unwrap()]);
    // The backup server: a config with [targets] only, no HSM, no TPM, no key.
    let server_cfg = sim.dir.path().join("server.toml");
    std::fs::write(&server_cfg, tb.toml()).unwrap();
    let keyless = |from: &str, json: bool| {
        let mut c = std::process::Command::new(common::bin());
        c.arg("--config").arg(&server_cfg);
        if json {
            c.arg("--json");
        }
        c.args(["verify", "--keyless", "--public-key"])
            .arg(&pem)
            .args(["--from", from, &names[0]])
            .env_clear()
            .output()
            .unwrap()
    };
    for from in [SSH.target, tb.get("SSH_URL")] {
        let out = keyless(from, false);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let line = String::from_utf8_lossy(&out.stdout);
        assert!(
            line.starts_with("offbox: keyless verify OK: kind=system "),
            "{line}"
        );
        assert!(
            line.contains(" slots=pkcs11,recovery signature verified"),
            "{line}"
        );
    }
    let out = keyless(SSH.target, true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["slots"], serde_json::json!(["pkcs11", "recovery"]));
    let created = v["created"].as_str().unwrap();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ", "-d"])
        .arg(format!("@{}", v["created_unix"]))
        .output()
        .unwrap();
    assert_eq!(created, String::from_utf8_lossy(&date.stdout).trim());
    // A name the config does not have is an error that names the file's targets.
    let out = keyless("nowhere", false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no [targets.nowhere]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn keys_retire_without_yes_lists_the_archives_it_would_make_unreadable() {
    let (sim, tb) = setup();
    let src = source(&sim, 1);
    let (_, names) = SSH.first_backup(&sim, &tb, &src);
    sim.ok(&["keys", "rotate"]);
    let out = sim.run(&["keys", "retire", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "would need the recovery shares\ttestbed-ssh\t{}\n",
            names[0]
        )
    );
    assert!(
        err.contains("offbox: keys retire 1 (dry run, nothing was destroyed): 1 archive(s) of this appliance on 6 checked target(s) use key-encryption key version 1; each would then open ONLY through its recovery slot"),
        "{err}"
    );
    assert!(
        err.contains("warning: target testbed-nfs-denied was not checked"),
        "{err}"
    );
    let out = sim.run(&["--json", "keys", "retire", "1"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["retire"]["affected"][0]["name"], names[0].as_str());
    assert_eq!(v["retire"]["affected"][0]["recovery_slot"], true);
    // Nothing was destroyed: the archive still opens through the HSM.
    sim.ok(&["verify", "--from", SSH.target, &names[0]]);
    // A version no archive uses lists nothing.
    sim.ok(&["keys", "rotate"]);
    let out = sim.run(&["keys", "retire", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains(": 0 archive(s) of this appliance on 6 checked target(s)"));
}

/// Whether a Unix account exists.
fn user_exists(name: &str) -> bool {
    std::process::Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn testbed_down_removes_the_users_up_created_once_no_bed_uses_them() {
    let n = std::process::id() % 1_000_000;
    let (ssh_user, smb_user) = (format!("obxtb{n}s"), format!("obxtb{n}m"));
    let pre = format!("obxtb{n}p");
    assert!(!user_exists(&ssh_user) && !user_exists(&smb_user) && !user_exists(&pre));
    let envs = [
        ("TESTBED_USER", ssh_user.as_str()),
        ("TESTBED_SMB_USER", smb_user.as_str()),
    ];
    let one = Testbed::up_with(&envs);
    let two = Testbed::up_with(&envs);
    assert!(user_exists(&ssh_user) && user_exists(&smb_user));
    drop(one);
    assert!(
        user_exists(&ssh_user) && user_exists(&smb_user),
        "still used by the other bed"
    );
    drop(two);
    assert!(!user_exists(&ssh_user), "{ssh_user} left behind");
    assert!(!user_exists(&smb_user), "{smb_user} left behind");
    let group = std::process::Command::new("getent")
        .args(["group", &ssh_user])
        .output()
        .unwrap();
    assert!(!group.status.success(), "its group is gone too");

    // An account the machine had before is used, and kept.
    let st = std::process::Command::new("useradd")
        .args(["-M", "-s", "/usr/sbin/nologin", &pre])
        .status()
        .unwrap();
    assert!(st.success());
    drop(Testbed::up_with(&[("TESTBED_SMB_USER", pre.as_str())]));
    let kept = user_exists(&pre);
    let _ = std::process::Command::new("userdel").arg(&pre).status();
    assert!(kept, "a user that up did not create is kept");
}

#[test]
fn a_missing_ssh_program_is_a_clear_error_at_target_check() {
    let (sim, _tb) = setup();
    let empty = sim.dir.path().join("no-ssh-here");
    std::fs::create_dir(&empty).unwrap();
    let out = sim
        .cmd(&["target", "check", SSH.target])
        .env("PATH", &empty)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("OpenSSH's client `ssh` is not installed"),
        "{err}"
    );
    assert!(err.contains("install the openssh-client package"), "{err}");
    // Nothing was left on the server by the probe.
    assert!(err.contains("ssh://offbox-tb@"), "{err}");
}
