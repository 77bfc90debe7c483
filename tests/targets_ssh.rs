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
    // Without --fingerprint: shows it, pins nothing.
    let out = sim.run(&["target", "accept-host-key", SSH.target]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&fp), "{}", stderr(&out));
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
