//! Core dumps are off in every command that handles a key or plaintext, from the start of
//! the command: checked from outside, on the running binary, while it waits on its input
//! (RLIMIT_CORE in /proc/PID/limits; the dumpable flag through the owner of /proc/PID).

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, Sim};
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Lets children inherit core dumps, so that a zero limit in them is offbox's doing.
/// Returns whether they are on (a container may forbid them: hard limit 0).
fn allow_core_dumps() -> bool {
    let (_, hard) = getrlimit(Resource::RLIMIT_CORE).unwrap();
    setrlimit(Resource::RLIMIT_CORE, hard, hard).unwrap();
    hard > 0
}

/// The soft and hard core size limits of a process, from /proc/PID/limits.
fn core_limits(pid: u32) -> Option<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max core file size"))?;
    let mut words = line["Max core file size".len()..].split_whitespace();
    Some((words.next()?.to_string(), words.next()?.to_string()))
}

/// The owner of /proc/PID: root when the process is not dumpable.
fn proc_owner(pid: u32) -> Option<u32> {
    std::fs::metadata(format!("/proc/{pid}/status"))
        .ok()
        .map(|m| m.uid())
}

/// Waits until `ok` holds for the child, which must still be running (waiting on its
/// input) when it does.
fn wait_until(child: &mut Child, what: &str, ok: impl Fn(u32) -> bool) {
    let pid = child.id();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            panic!("{what}: exited ({status}) before the check: {err}");
        }
        if ok(pid) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: still {:?} after 30 s",
            core_limits(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `cmd` with a pipe on stdin that stays open, checks that core dumps are off while
/// it waits, then closes stdin and lets it finish. The dumpable flag is checked too when
/// the command runs as another user than root (`check_owner`).
fn check(mut cmd: Command, what: &str, check_owner: bool) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(&mut child, what, |pid| {
        core_limits(pid) == Some(("0".into(), "0".into()))
    });
    if check_owner {
        // The process runs as a non-root user, yet /proc/PID belongs to root: it is not
        // dumpable.
        wait_until(&mut child, what, |pid| proc_owner(pid) == Some(0));
    }
    // Still waiting on its input: the settings were made before any of it was read.
    assert!(child.try_wait().unwrap().is_none(), "{what}");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"");
    drop(stdin);
    let status = child.wait().unwrap();
    // An empty archive is refused.
    assert!(!status.success(), "{what}: {status}");
}

#[test]
fn commands_that_handle_keys_or_plaintext_run_without_core_dumps() {
    let on = allow_core_dumps();
    eprintln!("core dumps inherited by children: {on}");
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // decrypt and restore: the device is open, the archive comes from standard input.
    let out = w.join("payload");
    let mut c = sim.cmd(&["decrypt", "-", "--output"]);
    c.arg(&out);
    check(c, "decrypt", false);
    assert!(!out.exists());
    let mut c = sim.cmd(&["restore", "-", "--to"]);
    c.arg(w.join("restored"));
    check(c, "restore", false);

    // backup create, waiting for the export command's first bytes.
    sim.edit_config(|t| format!("{t}\n[secrets]\nexport_command = [\"sleep\", \"5\"]\n"));
    let mut c = sim.cmd(&["backup", "create", "--kind", "secrets", "--output", "-"]);
    c.stdout(Stdio::null());
    check(c, "backup create", false);

    // verify --keyless, as an unprivileged user, so that the dumpable flag shows in the
    // owner of /proc/PID (for root it is root either way).
    let pem_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(pem_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pem = pem_dir.path().join("signing.pem");
    sim.ok(&["keys", "export-public", "--output", pem.to_str().unwrap()]);
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = Command::new(bin());
    c.args(["verify", "--keyless", "--public-key"])
        .arg(&pem)
        .arg("-")
        .env_clear()
        .current_dir(Path::new("/"));
    let root = nix::unistd::geteuid().is_root();
    if root {
        // nobody:nogroup
        c.uid(65534).gid(65534);
    }
    check(c, "verify --keyless", true);
}
