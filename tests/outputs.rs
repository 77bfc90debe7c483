//! Output files of `decrypt`/`recover --output` on the real SoftHSM test bed: a planted
//! symlink redirects nothing, an existing file is kept unless `--replace` is given, and a
//! run killed mid-write leaves no plaintext behind once the next run has cleaned up.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::{pattern, stderr, tree, Sim};

/// A secrets archive of `len` pseudo-random bytes; returns (archive, plaintext).
fn secrets_archive(sim: &Sim, work: &Path, len: usize) -> (PathBuf, Vec<u8>) {
    let plain = pattern(len, 7);
    let src = work.join("export.bin");
    fs::write(&src, &plain).unwrap();
    let archive = work.join("secrets.obx");
    sim.backup("secrets", &src, &archive);
    fs::remove_file(&src).unwrap();
    (archive, plain)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The first hex digits of this boot's id, as offbox puts them in run ids.
fn boot8() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect()
}

/// Whether any file under `dir` holds a 4 KiB run of `plain` (taken from its middle).
fn holds_plaintext(dir: &Path, plain: &[u8]) -> Option<String> {
    let probe = &plain[plain.len() / 2..plain.len() / 2 + 4096];
    tree(dir).into_iter().find(|f| {
        let data = fs::read(dir.join(f)).unwrap_or_default();
        data.windows(probe.len()).any(|w| w == probe)
    })
}

#[test]
fn planted_symlinks_do_not_redirect_the_output() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let (archive, plain) = secrets_archive(&sim, work.path(), 64 << 10);
    let victim = work.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let out_dir = work.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("vault.json");
    // Every name that an attacker could predict: the old partial name and its variants.
    let planted = [
        "vault.json.offbox-partial",
        ".vault.json.offbox-partial",
        ".vault.json.offbox-partial.",
    ];
    for p in planted {
        symlink(&victim, out_dir.join(p)).unwrap();
    }
    let o = sim.run(&["decrypt", s(&archive), "--output", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious",
        "the symlink's target"
    );
    assert_eq!(fs::read(&out).unwrap(), plain);
    let md = fs::symlink_metadata(&out).unwrap();
    assert!(md.file_type().is_file(), "a regular file, not a symlink");
    assert_eq!(
        md.permissions().mode() & 0o077,
        0,
        "no access for group or others"
    );
    for p in planted {
        let l = fs::symlink_metadata(out_dir.join(p)).unwrap();
        assert!(
            l.file_type().is_symlink(),
            "{p} is left alone, not written through"
        );
    }
}

#[test]
fn an_existing_destination_is_kept_unless_replace_is_given() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let (archive, plain) = secrets_archive(&sim, work.path(), 64 << 10);
    let dir = work.path().join("out");
    fs::create_dir(&dir).unwrap();
    let out = dir.join("vault.json");
    fs::write(&out, b"yesterday's export").unwrap();
    let o = sim.run(&["decrypt", s(&archive), "--output", s(&out)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(
        msg.contains("the file exists") && msg.contains("--replace"),
        "{msg}"
    );
    assert_eq!(fs::read(&out).unwrap(), b"yesterday's export");
    assert_eq!(tree(&dir), vec!["vault.json"], "nothing else written");

    let o = sim.run(&["decrypt", s(&archive), "--output", s(&out), "--replace"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), plain);
    assert_eq!(tree(&dir), vec!["vault.json"]);

    // A symlink at the destination is replaced itself; its target is never written.
    let victim = work.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let link = dir.join("link.json");
    symlink(&victim, &link).unwrap();
    let o = sim.run(&["decrypt", s(&archive), "--output", s(&link)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let o = sim.run(&["decrypt", s(&archive), "--output", s(&link), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
    assert_eq!(fs::read(&link).unwrap(), plain);

    // The same rules for break the glass.
    let pem = work.path().join("signing.pem");
    sim.ok(&["keys", "export-public", "--output", s(&pem)]);
    let mut args = vec!["recover".to_string(), s(&archive).to_string()];
    for i in 1..=3 {
        args.extend(["--share".to_string(), s(&sim.share(i)).to_string()]);
    }
    args.extend(["--public-key", s(&pem), "--output", s(&out)].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fs::write(&out, b"older").unwrap();
    let o = sim.run(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("the file exists"), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), b"older");
    let mut replace = args.clone();
    replace.push("--replace");
    let o = sim.run(&replace);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), plain);
}

#[test]
fn stale_partials_of_dead_runs_are_removed_and_reported() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let (archive, plain) = secrets_archive(&sim, work.path(), 64 << 10);
    let dir = work.path().join("out");
    fs::create_dir(&dir).unwrap();
    let boot = boot8();
    let me = std::process::id();
    // 4194305 is above the kernel's largest pid: that process never runs.
    let dead = format!(".vault.json.offbox-partial.4194305-{boot}.0123456789abcdef");
    let old = format!(".vault.json.offbox-partial.{me}-{boot}.00000000000000aa");
    let kept = [
        format!(".vault.json.offbox-partial.{me}-{boot}.0123456789abcdef"),
        ".vault.json.offbox-partial.junk".to_string(),
        format!(".other.json.offbox-partial.4194305-{boot}.0123456789abcdef"),
    ];
    for f in kept.iter().chain([&dead, &old]) {
        fs::write(dir.join(f), &plain[..4096]).unwrap();
    }
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86_400);
    fs::File::options()
        .write(true)
        .open(dir.join(&old))
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let out = dir.join("vault.json");
    let o = sim.run(&["decrypt", s(&archive), "--output", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(
        msg.contains(&format!("removed {}", dir.join(&dead).display())),
        "{msg}"
    );
    assert!(msg.contains("process 4194305 no longer runs"), "{msg}");
    assert!(
        msg.contains(&old) && msg.contains("more than a day"),
        "{msg}"
    );
    assert!(!dir.join(&dead).exists() && !dir.join(&old).exists());
    for f in &kept {
        assert!(dir.join(f).exists(), "{f} must be kept");
    }
    assert_eq!(fs::read(&out).unwrap(), plain);
}

/// The output's temporary among `pid`'s open files: a descriptor of a file in `dir` (not of
/// `dir` itself, which decrypt holds open too).
fn temp_fd(pid: u32, dir: &Path) -> Option<PathBuf> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|fd| fs::read_link(fd).is_ok_and(|t| t.parent() == Some(dir)))
}

#[test]
fn a_killed_decrypt_leaves_no_plaintext_after_the_next_run() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let (archive, plain) = secrets_archive(&sim, work.path(), 24 << 20);
    let bytes = fs::read(&archive).unwrap();
    let dir = work.path().join("out");
    fs::create_dir(&dir).unwrap();
    let out = dir.join("vault.json");
    // Feed half the archive and keep the pipe open: decrypt writes what it has, then waits.
    let mut child = sim
        .cmd(&["decrypt", "-", "--output", s(&out)])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&bytes[..bytes.len() / 2]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let written = loop {
        let size = temp_fd(child.id(), &dir)
            .and_then(|fd| fs::metadata(fd).ok())
            .map_or(0, |m| m.len());
        if size > (4 << 20) || Instant::now() > deadline {
            break size;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL: no destructor, no cleanup of its own.
    child.wait().unwrap();
    drop(stdin);
    assert!(
        written > (4 << 20),
        "decrypt streamed {written} bytes before the kill"
    );
    let leftovers = tree(&dir);
    assert!(!out.exists(), "nothing published: {leftovers:?}");
    // Nothing at all where the filesystem has O_TMPFILE; elsewhere only a partial that
    // names the dead run, so that the next run can tell it is stale.
    let dead_run = format!(".vault.json.offbox-partial.{pid}-");
    for f in &leftovers {
        assert!(
            f.starts_with(&dead_run),
            "{f} left behind by the killed run"
        );
    }

    // The next run to the same destination removes whatever a named temporary left.
    let o = sim.run(&["decrypt", s(&archive), "--output", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in &leftovers {
        assert!(stderr(&o).contains(f.as_str()), "removal of {f} reported");
    }
    assert_eq!(tree(&dir), vec!["vault.json"], "before: {leftovers:?}");
    assert_eq!(fs::read(&out).unwrap(), plain);
    fs::remove_file(&out).unwrap();
    assert_eq!(holds_plaintext(&dir, &plain), None);
    assert_eq!(holds_plaintext(work.path(), &plain), None);
}

#[test]
fn keys_export_public_never_overwrites() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let pem = work.path().join("signing.pem");
    fs::write(&pem, b"keep").unwrap();
    let o = sim.run(&["keys", "export-public", "--output", s(&pem)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(fs::read(&pem).unwrap(), b"keep");
}

#[test]
fn keys_export_public_says_what_it_wrote() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let pem = work.path().join("signing.pem");
    let o = sim.run(&["keys", "export-public", "--output", s(&pem)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = fs::read_to_string(&pem).unwrap();
    assert!(text.starts_with("-----BEGIN PUBLIC KEY-----"), "{text}");
    // The key id is the one `verify` names as the signer.
    let src = work.path().join("export.bin");
    fs::write(&src, b"vault").unwrap();
    let archive = work.path().join("a.obx");
    sim.backup("secrets", &src, &archive);
    let v: serde_json::Value =
        serde_json::from_slice(&sim.ok(&["--json", "verify", s(&archive)])).unwrap();
    let id = v["signature"]["verified"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        stderr(&o),
        format!(
            "offbox: wrote the public signing key {id} (PEM) to {}; give it to the backup server for `offbox verify --keyless --public-key FILE`\n",
            pem.display()
        )
    );
    assert!(o.stdout.is_empty());
    // To standard output: the PEM alone there, the line on stderr; --json says it as data.
    let o = sim.run(&["--json", "keys", "export-public", "--output", "-"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), text);
    let v: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"exported": {"signing_key_id": id, "output": "standard output"}})
    );
}

#[test]
fn verify_and_restore_report_the_same_archive_the_same_way() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("tree");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/a.conf"), b"k=v\n").unwrap();
    fs::write(src.join("data.bin"), pattern(300_000, 3)).unwrap();
    let archive = work.path().join("a.obx");
    sim.backup("system", &src, &archive);
    let json = |args: &[&str]| -> (String, serde_json::Value) {
        let out = sim.ok(args);
        let text = String::from_utf8(out).unwrap();
        (text.clone(), serde_json::from_str(&text).unwrap())
    };
    let (_, v) = json(&["--json", "verify", s(&archive)]);
    let dest = work.path().join("restored");
    let (rtext, r) = json(&["--json", "restore", s(&archive), "--to", s(&dest)]);
    let tar = work.path().join("t.tar");
    let o = sim.run(&["--json", "decrypt", s(&archive), "--output", s(&tar)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    // The whole decompressed payload, tar padding included: the same in all three.
    let tar_len = fs::metadata(&tar).unwrap().len();
    for (what, x) in [("verify", &v), ("restore", &r), ("decrypt", &d)] {
        assert_eq!(x["payload_bytes"], tar_len, "{what}");
        assert_eq!(
            x["slots"],
            serde_json::json!(["pkcs11", "recovery"]),
            "{what}"
        );
        assert_eq!(x["created"], v["created"], "{what}");
    }
    assert_eq!(v["entries"], r["entries"]);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ", "-d"])
        .arg(format!("@{}", v["created_unix"]))
        .output()
        .unwrap();
    assert_eq!(
        v["created"].as_str().unwrap(),
        String::from_utf8_lossy(&date.stdout).trim()
    );
    assert_eq!(rtext.matches("\"signature\"").count(), 1, "{rtext}");
    // The human lines say the same.
    let line = String::from_utf8(sim.ok(&["verify", s(&archive)])).unwrap();
    assert!(
        line.contains(&format!(
            " created={} archive_bytes=",
            v["created"].as_str().unwrap()
        )) && line.contains(&format!(" payload_bytes={tar_len} "))
            && line.contains(" slots=pkcs11,recovery "),
        "{line}"
    );
}

#[test]
fn progress_on_a_terminal_shows_percent_and_eta_and_is_cleared_before_the_summary() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("tree");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), pattern(96 << 20, 5)).unwrap();
    // `script` gives the command a terminal as stderr; the archive goes to /dev/null.
    let tty = on_a_terminal(
        &sim,
        &format!(
            "backup create --kind system --source {} --output - >/dev/null",
            src.display()
        ),
    );
    bar_cleared_before_summary(&tty, "backup", "offbox: backup complete: ");
}

#[test]
fn restore_and_verify_of_a_file_show_percent_and_eta_and_clear_the_bar() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("tree");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), pattern(96 << 20, 6)).unwrap();
    let archive = work.path().join("a.obx");
    sim.backup("system", &src, &archive);
    let dest = work.path().join("restored");
    let tty = on_a_terminal(
        &sim,
        &format!("restore {} --to {}", archive.display(), dest.display()),
    );
    bar_cleared_before_summary(&tty, "restore", "offbox: restore complete: ");
    assert_eq!(
        // Sources are archived under their absolute path.
        fs::read(dest.join(src.strip_prefix("/").unwrap()).join("big.bin")).unwrap(),
        pattern(96 << 20, 6),
        "the restore under a terminal is whole"
    );
    let tty = on_a_terminal(&sim, &format!("verify {}", archive.display()));
    bar_cleared_before_summary(&tty, "verify", "offbox: verify OK");
}

/// Runs `offbox ARGS` (a shell command line after the binary and its config) with a
/// terminal as stdout and stderr (`script`); returns what the terminal showed.
fn on_a_terminal(sim: &Sim, args: &str) -> String {
    let cmd = format!(
        "{} --config {} {args}",
        common::bin().display(),
        sim.config().display(),
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("SOFTHSM2_CONF", &sim.softhsm_conf)
        .env("OFFBOX_STATE_DIR", sim.path().join("state"))
        .env("COLUMNS", "100")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{tty}");
    tty
}

/// Frames of `label`'s bar with a percentage and an ETA came before the `summary` line,
/// none after it, and the last one was cleared before the summary was written.
fn bar_cleared_before_summary(tty: &str, label: &str, summary: &str) {
    let at = tty
        .find(summary)
        .unwrap_or_else(|| panic!("no summary {summary:?} in: {tty}"));
    let (before, after) = tty.split_at(at);
    let frame = last_frame(before, label).unwrap_or_else(|| panic!("no progress frame: {tty}"));
    assert!(frame.contains("ETA "), "{frame}");
    assert!(
        !after.contains("% ["),
        "a frame after the summary: {after:?}"
    );
    assert!(
        !after.contains('\x1b'),
        "drawing after the summary: {after:?}"
    );
    let last = before.rfind(frame).unwrap() + frame.len();
    assert!(before[last..].contains("\x1b[2K"), "{:?}", &before[last..]);
}

/// The last progress frame with a percentage: `LABEL  NN% [...`.
fn last_frame<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.split(['\r', '\n'])
        .rfind(|l| l.contains(&format!("{label} ")) && l.contains("% ["))
}
