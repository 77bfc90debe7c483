//! Custodians type their share codes instead of passing share files: on standard input (any
//! case, spaces for dashes, blank lines skipped, stopping at the threshold), never on the
//! stream that carries the archive, and at a real terminal prompt that echoes nothing.

mod common;
#[path = "common/recovery.rs"]
mod rc;

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bin, pattern, stderr, tree, Sim};
use rc::*;

/// Custodians type their codes (no --share): read from standard input one per line, in any
/// case, with spaces for dashes, blank lines skipped, reading stopping at the threshold. Too
/// few, a typo (named by its position) and no input at all are refused with nothing written.
#[test]
fn typed_shares_on_standard_input() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let secrets = pattern(100_000, 9);
    let file = w.join("export.bin");
    fs::write(&file, &secrets).unwrap();
    let arch = w.join("secrets.obx");
    let id = archive_id(&sim.backup("secrets", &file, &arch));
    let key_id = key_id_of(&sim.share(1));
    let codes: Vec<String> = (1..=5).map(|i| code_of(&sim.share(i))).collect();
    destroy_token(&sim);
    let cwd = fresh(w, "cwd");

    let out = w.join("typed.out");
    let input = format!(
        "\n{}\n{}\n\n{}\nnot a share: never read, the threshold was reached\n",
        codes[1].to_lowercase().replace('-', " "),
        codes[3],
        codes[2]
    );
    let o = with_stdin(
        bare(
            &cwd,
            &[
                "recover",
                s(&arch),
                "--output",
                s(&out),
                "--public-key",
                s(&sim.path().join("shares/signing-keys.pem")),
            ],
        ),
        &input,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), secrets);
    assert_audit(&stderr(&o), &id, "secrets", "2,3,4");
    // Not a terminal: no prompt text.
    assert!(!stderr(&o).contains("custodian"), "{}", stderr(&o));

    let cases = [
        (
            format!("{}\n{}\n", codes[0], codes[4]),
            format!("2 distinct share(s) given, but recovery key {key_id} needs 3; bring more custodians"),
        ),
        (
            format!("{}\n{}\n{}\n", codes[0], typo(&codes[1], 30), codes[2]),
            "share #2 (typed) is damaged or mistyped (checksum mismatch); check it character by character against the custodian's copy".to_string(),
        ),
        (
            String::new(),
            "the recovery slot needs the custodians' shares; pass them with --share FILE (or type them at the prompt)".to_string(),
        ),
    ];
    for (i, (input, message)) in cases.iter().enumerate() {
        let dir = fresh(w, &format!("out-{i}"));
        let out = dir.join("payload");
        let o = with_stdin(
            bare(
                &cwd,
                &[
                    "recover",
                    s(&arch),
                    "--output",
                    s(&out),
                    "--public-key",
                    s(&sim.path().join("shares/signing-keys.pem")),
                ],
            ),
            input,
        );
        assert_fails(&o, 4, message);
        assert_nothing_written(&dir, &out);
    }

    // A custodian who types a share already given does not count twice: a third is asked for.
    let out = w.join("typed-twice.out");
    let o = with_stdin(
        bare(
            &cwd,
            &[
                "recover",
                s(&arch),
                "--output",
                s(&out),
                "--public-key",
                s(&sim.path().join("shares/signing-keys.pem")),
            ],
        ),
        &format!("{}\n{}\n{}\n{}\n", codes[0], codes[0], codes[2], codes[4]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), secrets);
    assert_audit(&stderr(&o), &id, "secrets", "1,3,5");

    // The drill takes typed shares too.
    let o = with_stdin(
        bare(&cwd, &["recovery", "verify-shares"]),
        &format!("{}\n{}\n{}\n", codes[4], codes[0], codes[2]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("offbox: shares 1,3,5 rebuild recovery key {key_id}: OK (nothing was written)\n")
    );
    assert_eq!(tree(&cwd), Vec::<String>::new());
}

/// `recover -` reads the archive from standard input: with share files it works; without,
/// the shares cannot be typed on the same stream, which must be a clear error at once, never
/// a hang, with nothing written.
#[test]
fn archive_on_standard_input_needs_share_files() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let secrets = pattern(40_000, 17);
    let file = w.join("export.bin");
    fs::write(&file, &secrets).unwrap();
    let arch = w.join("secrets.obx");
    let id = archive_id(&sim.backup("secrets", &file, &arch));
    destroy_token(&sim);
    let cwd = fresh(w, "cwd");

    let out = w.join("from-stdin.out");
    let mut args = vec!["recover".to_string(), "-".into(), "--output".into()];
    args.push(out.display().to_string());
    args.extend(share_args(&[sim.share(1), sim.share(3), sim.share(5)]));
    let o = bare(&cwd, &args)
        .stdin(fs::File::open(&arch).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), secrets);
    assert_audit(&stderr(&o), &id, "secrets", "1,3,5");

    let dir = fresh(w, "out-typed");
    let out = dir.join("payload");
    let mut child = bare(&cwd, &["recover", "-", "--output", s(&out)])
        .stdin(fs::File::open(&arch).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`offbox recover - --output FILE` (no --share) hangs instead of refusing: the archive and the typed shares would share standard input");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.starts_with("offbox: error: "), "{err}");
    assert!(err.contains("--share FILE"), "{err}");
    assert!(!err.contains("AUDIT"), "{err}");
    assert_nothing_written(&dir, &out);
}

/// Waits until `text` appears in what the reader thread collected.
fn wait_for(rx: &mpsc::Receiver<Vec<u8>>, seen: &mut Vec<u8>, text: &str, deadline: Instant) {
    while !String::from_utf8_lossy(seen).contains(text) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(_) => panic!(
                "timed out waiting for {text:?}; terminal so far:\n{}",
                String::from_utf8_lossy(seen)
            ),
        }
    }
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", s(p).replace('\'', "'\\''"))
}

/// Custodians type at a real prompt on a pseudo-terminal (script(1)): each is prompted in
/// turn ("custodian 2 of 3"), a share typed twice counts once, and nothing typed is echoed.
#[test]
fn typed_shares_at_a_terminal_prompt_are_not_echoed() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let secrets = pattern(50_000, 3);
    let file = w.join("export.bin");
    fs::write(&file, &secrets).unwrap();
    let arch = w.join("secrets.obx");
    let id = archive_id(&sim.backup("secrets", &file, &arch));
    let codes: Vec<String> = [1, 4, 5].iter().map(|&i| code_of(&sim.share(i))).collect();
    destroy_token(&sim);
    let out = w.join("typed.out");

    let command = format!(
        "{} recover {} --output {} --public-key {}",
        sh_quote(&bin()),
        sh_quote(&arch),
        sh_quote(&out),
        sh_quote(&sim.path().join("shares/signing-keys.pem"))
    );
    // script(1) gives offbox a pseudo-terminal; the environment is PATH (and SHELL for
    // script) only, as for every break-the-glass command here.
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("SHELL", "/bin/sh")
        .current_dir(w)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("script(1) from util-linux is needed (tests/deps.sh): {e}"));
    let mut term_out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = term_out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    // Custodian 1 types, custodian 4 types share 1 again by mistake (it counts once and the
    // prompt asks again), then custodians 4 and 5 type theirs.
    let prompt = |k: &str| {
        format!("custodian {k}: type your share code and press Enter (input is hidden): ")
    };
    let steps = [
        (prompt("1"), &codes[0]),
        (prompt("2 of 3"), &codes[0]),
        (
            "share 1 was given already; it counts once".to_string(),
            &codes[1],
        ),
        (prompt("3 of 3"), &codes[2]),
    ];
    for (wait, code) in steps {
        wait_for(&rx, &mut seen, &wait, deadline);
        stdin.write_all(format!("{code}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    wait_for(&rx, &mut seen, "offbox: decrypted: ", deadline);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "script did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    reader.join().unwrap();
    while let Ok(chunk) = rx.try_recv() {
        seen.extend_from_slice(&chunk);
    }
    let transcript = String::from_utf8_lossy(&seen).into_owned();
    assert!(status.success(), "{transcript}");
    assert_eq!(fs::read(&out).unwrap(), secrets);
    assert_audit(&transcript, &id, "secrets", "1,4,5");
    for code in &codes {
        for group in code.split('-').filter(|g| g.len() == 5) {
            assert!(
                !transcript.contains(group),
                "typed share echoed ({group}): {transcript}"
            );
        }
    }
}
