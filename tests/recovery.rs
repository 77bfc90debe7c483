//! Break the glass with custodian shares, on a real SoftHSM token (issue 5).
//!
//! 3-of-5 end to end with the token destroyed, a disaster restore onto a new token, the
//! recovery private key nowhere on disk but in the shares, typed shares (standard input and a
//! pseudo-terminal), the ceremonies (init, drill, rotation), the refusal to back up without a
//! recovery key, and the secrets export command. Every `recover` runs with nothing in its
//! environment but PATH: no SOFTHSM2_CONF, no OFFBOX_CONFIG, no config file, no token.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bin, pattern, stderr, tree, Sim};
use offbox::keys::recovery::share::{combine, Share};
use offbox::keys::recovery::RecoverySecret;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `offbox ARGS` as at a break-the-glass: the environment holds PATH and nothing else (no
/// SOFTHSM2_CONF, no OFFBOX_CONFIG, no HOME), run from `cwd`, standard input closed.
fn bare<S: AsRef<OsStr>>(cwd: &Path, args: &[S]) -> Command {
    let mut c = Command::new(bin());
    c.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::null());
    c
}

/// `--share F1 --share F2 ...`.
fn share_args(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| ["--share".to_string(), f.display().to_string()])
        .collect()
}

/// `offbox recover ARCHIVE --share ... EXTRA...` with the bare environment.
fn recover(cwd: &Path, archive: &Path, shares: &[PathBuf], extra: &[&str]) -> Output {
    let mut args = vec!["recover".to_string(), archive.display().to_string()];
    args.extend(share_args(shares));
    args.extend(extra.iter().map(|a| a.to_string()));
    bare(cwd, &args).output().unwrap()
}

/// Runs `cmd` with `input` on its standard input.
fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may stop reading early (an error, or the threshold reached): ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// "Destroy the token": the appliance's HSM is gone, and with it the device slot's key.
fn destroy_token(sim: &Sim) {
    let tokens = sim.path().join("tokens");
    fs::remove_dir_all(&tokens).unwrap();
    assert!(!tokens.exists());
}

/// The archive id from a `backup complete` line.
fn archive_id(backup_stderr: &str) -> String {
    let i = backup_stderr
        .find(" archive=")
        .unwrap_or_else(|| panic!("no archive id in: {backup_stderr}"))
        + " archive=".len();
    let id: String = backup_stderr[i..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(id.len(), 32, "{backup_stderr}");
    id
}

/// The recovery key id written in a share file.
fn key_id_of(share_file: &Path) -> String {
    fs::read_to_string(share_file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("key-id: ").map(str::to_string))
        .unwrap()
}

/// The typable code of a share file (its last non-empty line).
fn code_of(share_file: &Path) -> String {
    let text = fs::read_to_string(share_file).unwrap();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap()
        .to_string()
}

/// The public key line of a config.
fn public_key_of(config: &Path) -> String {
    let lines: Vec<String> = fs::read_to_string(config)
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("public_key"))
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v = lines[0].split('"').nth(1).unwrap().to_string();
    assert!(v.starts_with("offbox-recovery-v1:"), "{v}");
    v
}

/// A new empty directory.
fn fresh(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir(&d).unwrap();
    d
}

/// "Nothing written": neither the output file nor its temporary `.offbox-partial` twin exist,
/// and the directory they would be in is still empty.
/// `offbox recovery init|rotate --shares N --threshold M --out DIR`.
fn ceremony(sim: &Sim, verb: &str, shares: u32, threshold: u32, out: &Path) -> Output {
    sim.run(&[
        "recovery",
        verb,
        "--shares",
        &shares.to_string(),
        "--threshold",
        &threshold.to_string(),
        "--out",
        s(out),
    ])
}

fn assert_nothing_written(dir: &Path, output: &Path) {
    assert!(!output.exists(), "{} was written", output.display());
    let partial = PathBuf::from(format!("{}.offbox-partial", output.display()));
    assert!(!partial.exists(), "{} was left", partial.display());
    assert_eq!(
        tree(dir),
        Vec::<String>::new(),
        "{} is not empty",
        dir.display()
    );
}

/// A failed command: its exit code, the error line, no data on stdout, and no audit line
/// claiming that an archive was opened.
fn assert_fails(o: &Output, code: i32, message: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.contains(&format!("offbox: error: {message}")),
        "expected the error\n  {message}\nin stderr:\n  {err}"
    );
    assert!(!err.contains("AUDIT"), "audit line on a failure: {err}");
    assert!(o.stdout.is_empty(), "stdout: {}", stdout(o));
}

/// Exactly one break-the-glass audit line, naming the archive, its kind and the share indexes.
fn assert_audit(err: &str, archive_id: &str, kind: &str, indexes: &str) {
    let lines: Vec<&str> = err
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.contains("AUDIT"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    let l = lines[0];
    let prefix = format!(
        "offbox: AUDIT: break-the-glass: archive {archive_id} ({kind} of appliance hsm-sim, created "
    );
    let suffix = format!(") opened with recovery shares {indexes}");
    assert!(l.starts_with(&prefix), "{l}");
    assert!(l.ends_with(&suffix), "{l}");
    let created: i64 = l[prefix.len()..l.len() - suffix.len()].parse().unwrap();
    assert!(created > 1_600_000_000, "{l}");
}

/// The code text with the `nth` base32 character (dashes not counted) changed to another
/// base32 character: a typo the checksum must catch.
fn typo(code: &str, nth: usize) -> String {
    let mut k = 0;
    code.chars()
        .map(|c| {
            if c == '-' {
                return c;
            }
            k += 1;
            if k == nth + 1 {
                if c == 'Q' {
                    'R'
                } else {
                    'Q'
                }
            } else {
                c
            }
        })
        .collect()
}

/// A share code with one byte of its Shamir value changed and its checksum recomputed: it
/// parses, but it is wrong (a forged or bit-rotted share that the checksum cannot catch).
fn forged(code: &str) -> String {
    let raw: String = code.chars().filter(|c| *c != '-').collect();
    let mut bin = data_encoding::BASE32_NOPAD.decode(raw.as_bytes()).unwrap();
    assert_eq!(bin.len(), 48);
    bin[20] ^= 0x01;
    let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bin[..44]);
    bin[44..].copy_from_slice(&sum.as_ref()[..4]);
    data_encoding::BASE32_NOPAD.encode(&bin)
}

/// A share file's text with its code replaced by `f(code)`.
fn edit_share(file: &Path, f: impl FnOnce(&str) -> String) -> String {
    let text = fs::read_to_string(file).unwrap();
    let code = code_of(file);
    let new = f(&code);
    assert_ne!(new, code);
    text.replace(&code, &new)
}

/// Another key ceremony (another recovery key, made on another appliance's token, whose
/// signing key its shares record); returns its share directory and key id.
fn other_ceremony(_sim: &Sim, work: &Path) -> (PathBuf, String) {
    let other = Sim::new();
    let dir = work.join("other-shares");
    fs::create_dir(&dir).unwrap();
    for e in fs::read_dir(other.path().join("shares")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let id = key_id_of(&dir.join("share-1-of-5.txt"));
    (dir, id)
}

/// Rebuilds the recovery private key from share files, as custodians would.
fn rebuild(files: &[PathBuf]) -> RecoverySecret {
    let shares: Vec<(String, Share)> = files
        .iter()
        .map(|f| {
            let name = f.display().to_string();
            let share = Share::parse(&fs::read_to_string(f).unwrap(), &name).unwrap();
            (name, share)
        })
        .collect();
    combine(&shares).unwrap()
}

/// A small system tree: a file spanning many 4 KiB segments, an empty file, a private file, a
/// symlink, an empty directory.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/vault")).unwrap();
    fs::create_dir_all(root.join("var/lib/empty")).unwrap();
    fs::write(root.join("etc/vault/db.bin"), pattern(70_000, 1)).unwrap();
    fs::set_permissions(
        root.join("etc/vault/db.bin"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::write(root.join("etc/vault/empty"), b"").unwrap();
    fs::write(
        root.join("etc/vault/settings.conf"),
        b"listen = 0.0.0.0:443\n",
    )
    .unwrap();
    symlink("db.bin", root.join("etc/vault/current")).unwrap();
}

/// Where `restore --to DEST` puts the tree of absolute source `src`.
fn restored(dest: &Path, src: &Path) -> PathBuf {
    dest.join(src.strip_prefix("/").unwrap())
}

/// Same entries, types, modes, contents, link targets and file mtimes.
fn assert_same_tree(a: &Path, b: &Path) {
    let la = tree(a);
    assert!(!la.is_empty());
    assert_eq!(la, tree(b), "entry lists differ");
    for rel in la {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.mode(), mb.mode(), "{rel}: mode");
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
        } else if ma.is_file() {
            assert_eq!(fs::read(&pa).unwrap(), fs::read(&pb).unwrap(), "{rel}");
            assert_eq!(ma.mtime(), mb.mtime(), "{rel}: mtime");
        }
    }
}

/// Every file under `dir` with its content (None for directories and links).
fn snapshot(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    tree(dir)
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let meta = fs::symlink_metadata(&p).unwrap();
            let data = meta.is_file().then(|| fs::read(&p).unwrap());
            (rel, data)
        })
        .collect()
}

/// A TOML basic string.
fn toml_str(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Sets `[secrets] export_command = [ARGV...]`.
fn set_export_command(sim: &Sim, argv: &[&str]) {
    let list = argv
        .iter()
        .map(|a| toml_str(a))
        .collect::<Vec<_>>()
        .join(", ");
    sim.edit_config(|t| format!("{t}\n[secrets]\nexport_command = [{list}]\n"));
}

/// `backup create --kind secrets --output -` (payload from the export command) into `archive`.
fn backup_secrets_from_export(sim: &Sim, archive: &Path) -> Output {
    sim.cmd(&["backup", "create", "--kind", "secrets", "--output", "-"])
        .stdout(fs::File::create(archive).unwrap())
        .output()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 3-of-5 end to end
// ---------------------------------------------------------------------------------------------

/// System and secrets archives are backed up, the token is destroyed, and `recover` with
/// shares {1,3,5} alone (no HSM, no config, no SoftHSM environment) brings back every byte,
/// with the audit line on stderr. Two shares, a corrupted share and shares of another ceremony
/// are refused with errors that say which and why, and nothing is written.
#[test]
fn three_of_five_end_to_end_with_the_token_destroyed() {
    let sim = Sim::new();
    sim.small_segments();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let secrets = pattern(300_000, 5);
    let secrets_file = w.join("vault-export.bin");
    fs::write(&secrets_file, &secrets).unwrap();
    let sys = w.join("system.obx");
    let sec = w.join("secrets.obx");
    let sys_id = archive_id(&sim.backup("system", &src, &sys));
    let sec_id = archive_id(&sim.backup("secrets", &secrets_file, &sec));
    // The tar stream as the appliance itself decrypts it, for a byte-exact comparison.
    let tar_ref = w.join("system-by-device.tar");
    sim.ok(&["decrypt", s(&sys), "--output", s(&tar_ref)]);
    let pem = w.join("appliance.pem");
    sim.ok(&["keys", "export-public", "--output", s(&pem)]);
    let key_id = key_id_of(&sim.share(1));

    destroy_token(&sim);
    let gone = w.join("via-device");
    let o = sim.run(&["decrypt", s(&sec), "--output", s(&gone)]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "the device still opens the archive"
    );
    assert!(stderr(&o).starts_with("offbox: error: "), "{}", stderr(&o));
    assert!(!gone.exists());

    // Break the glass: shares 5, 1, 3 (any order), an empty working directory.
    let cwd = fresh(w, "cwd");
    let q = vec![sim.share(5), sim.share(1), sim.share(3)];
    let out = w.join("secrets.out");
    let o = recover(&cwd, &sec, &q, &["--output", s(&out)]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(fs::read(&out).unwrap(), secrets, "secrets differ");
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_audit(&err, &sec_id, "secrets", "1,3,5");
    assert!(
        err.contains(&format!(
            "offbox: decrypted: kind=secrets archive={sec_id} payload_bytes=300000 signature verified (key "
        )) && err.contains(&format!(", trusted as the custodians' shares) to {}\n", out.display())),
        "{err}"
    );

    // The system archive as a tar stream: identical to what the device decrypted.
    let tar = w.join("system.tar");
    let o = recover(&cwd, &sys, &q, &["--output", s(&tar)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&tar).unwrap(), fs::read(&tar_ref).unwrap());
    assert_audit(&stderr(&o), &sys_id, "system", "1,3,5");

    // The system archive into a new directory: the same tree.
    let dest = w.join("restored");
    let o = recover(&cwd, &sys, &q, &["--to", s(&dest)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!(
            "offbox: restore complete: kind=system archive={sys_id} "
        )),
        "{}",
        stdout(&o)
    );
    assert_audit(&stderr(&o), &sys_id, "system", "1,3,5");
    assert_same_tree(&src, &restored(&dest, &src));

    // With the appliance's public key (kept with the shares), the signature is checked too.
    let out2 = w.join("secrets-signed.out");
    let o = recover(
        &cwd,
        &sec,
        &q,
        &["--output", s(&out2), "--public-key", s(&pem), "--json"],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(fs::read(&out2).unwrap(), secrets);
    let json = err.lines().find(|l| l.starts_with('{')).expect(&err);
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["archive_id"], sec_id);
    assert_eq!(v["payload_bytes"], 300_000);
    assert_eq!(
        v["signature"]["verified"]["trusted_as"],
        format!("--public-key {}", pem.display()),
        "{json}"
    );
    assert_audit(&err, &sec_id, "secrets", "1,3,5");

    // recover wrote nothing but its outputs.
    assert_eq!(tree(&cwd), Vec::<String>::new());

    // Two shares (also: three files, two distinct shares): refused, nothing written.
    let too_few = format!(
        "2 distinct share(s) given, but recovery key {key_id} needs 3; bring more custodians"
    );
    for (name, shares) in [
        ("two", vec![sim.share(2), sim.share(4)]),
        ("duplicate", vec![sim.share(2), sim.share(4), sim.share(2)]),
    ] {
        let dir = fresh(w, name);
        let out = dir.join("payload");
        assert_fails(
            &recover(&cwd, &sec, &shares, &["--output", s(&out)]),
            4,
            &too_few,
        );
        assert_nothing_written(&dir, &out);
        let to = dir.join("tree");
        assert_fails(
            &recover(&cwd, &sys, &shares, &["--to", s(&to)]),
            4,
            &too_few,
        );
        assert_nothing_written(&dir, &to);
    }

    // A corrupted share (one character changed; a group missing): refused, naming the file.
    // A share that passes its checksum but is wrong: refused, the key id does not match.
    let bad = fresh(w, "corrupt");
    let typo3 = bad.join("share-3-of-5.txt");
    fs::write(&typo3, edit_share(&sim.share(3), |c| typo(c, 40))).unwrap();
    let forged1 = bad.join("share-1-of-5.txt");
    fs::write(&forged1, edit_share(&sim.share(1), forged)).unwrap();
    let short5 = bad.join("share-5-of-5.txt");
    fs::write(
        &short5,
        edit_share(&sim.share(5), |c| {
            let mut groups: Vec<&str> = c.split('-').collect();
            groups.remove(7);
            groups.join("-")
        }),
    )
    .unwrap();
    for (shares, message) in [
        (
            vec![sim.share(1), typo3.clone(), sim.share(5)],
            format!("share {} is damaged or mistyped (checksum mismatch); check it character by character against the custodian's copy", typo3.display()),
        ),
        (
            vec![sim.share(1), sim.share(3), short5.clone()],
            format!("share {} is damaged or mistyped (45 bytes instead of 48: a group is missing or extra)", short5.display()),
        ),
        (
            vec![forged1.clone(), sim.share(3), sim.share(5)],
            format!("the shares do not reconstruct recovery key {key_id}: at least one share is wrong although its checksum passed; run `offbox recovery verify-shares` with each subset to find it"),
        ),
    ] {
        let dir = fresh(w, "out-corrupt");
        let out = dir.join("payload");
        assert_fails(
            &recover(&cwd, &sec, &shares, &["--output", s(&out)]),
            4,
            &message,
        );
        assert_nothing_written(&dir, &out);
        fs::remove_dir(&dir).unwrap();
    }

    // Shares of another ceremony: mixed in, or all of them.
    let (other, other_id) = other_ceremony(&sim, w);
    assert_ne!(other_id, key_id);
    let other5 = other.join("share-5-of-5.txt");
    for (shares, message) in [
        (
            vec![sim.share(1), sim.share(3), other5.clone()],
            format!("share {} belongs to recovery key {other_id}, the others to {key_id}; use shares of one ceremony only", other5.display()),
        ),
        (
            (1..=3).map(|i| other.join(format!("share-{i}-of-5.txt"))).collect(),
            format!("the archive's recovery slot was made for recovery key {key_id}, but the shares reconstruct another recovery key ({other_id}); bring the shares of the ceremony that made key {key_id}"),
        ),
    ] {
        let dir = fresh(w, "out-other");
        let out = dir.join("payload");
        assert_fails(
            &recover(&cwd, &sec, &shares, &["--output", s(&out)]),
            4,
            &message,
        );
        assert_nothing_written(&dir, &out);
        let to = dir.join("tree");
        assert_fails(&recover(&cwd, &sys, &shares, &["--to", s(&to)]), 4, &message);
        assert_nothing_written(&dir, &to);
        fs::remove_dir(&dir).unwrap();
    }

    // An existing output file is never overwritten, even by a successful recovery.
    let o = recover(&cwd, &sec, &q, &["--output", s(&out)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the file exists; give a new name"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(&out).unwrap(), secrets);
}

// ---------------------------------------------------------------------------------------------
// Disaster restore drill
// ---------------------------------------------------------------------------------------------

/// The appliance and its token are lost; a replacement with a new token (its own KEK and
/// recovery key) restores the old archive with the old custodians' shares, byte for byte, and
/// logs the audit line. Without shares, or with too few, nothing is restored.
#[test]
fn disaster_restore_drill_on_a_new_token() {
    let old = Sim::new();
    old.small_segments();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let arch = w.join("system.obx");
    let id = archive_id(&old.backup("system", &src, &arch));
    let old_pem = w.join("old-appliance.pem");
    old.ok(&["keys", "export-public", "--output", s(&old_pem)]);
    let key_id = key_id_of(&old.share(1));
    let shares = vec![old.share(4), old.share(2), old.share(1)];
    destroy_token(&old);

    // The replacement appliance.
    let new = Sim::new();
    assert_ne!(key_id_of(&new.share(1)), key_id);

    // The new appliance does not trust the old one's signing key, and its token could not
    // open the archive anyway: nothing is restored, the shares are named.
    let dest0 = w.join("without-shares");
    let o = new.run(&["restore", s(&arch), "--to", s(&dest0)]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("which is not a trusted signing key here (trusted: ")
            && stderr(&o).contains(
                "An archive of another appliance opens with the custodians' shares (--share FILE"
            ),
        "{}",
        stderr(&o)
    );
    assert!(!dest0.exists());

    // Too few shares: refused before anything is extracted.
    let dest1 = w.join("two-shares");
    let mut args = vec![
        "restore".to_string(),
        arch.display().to_string(),
        "--to".into(),
        dest1.display().to_string(),
    ];
    args.extend(share_args(&shares[..2]));
    let args1: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_fails(
        &new.run(&args1),
        4,
        &format!(
            "2 distinct share(s) given, but recovery key {key_id} needs 3; bring more custodians"
        ),
    );
    assert!(!dest1.exists());
    assert!(!fs::read_dir(w).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("offbox-partial")));

    // With three shares: restored, with an audit line naming archive, destination and shares.
    let dest = w.join("restored");
    let mut args = vec![
        "restore".to_string(),
        arch.display().to_string(),
        "--to".into(),
        dest.display().to_string(),
    ];
    args.extend(share_args(&shares));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = new.run(&argv);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "offbox: AUDIT: restore of archive {id} (system of appliance hsm-sim) to {} with recovery shares 1,2,4\n",
            dest.display()
        )),
        "{err}"
    );
    assert!(
        out.starts_with(&format!(
            "offbox: restore complete: kind=system archive={id} payload_bytes="
        )),
        "{out}"
    );
    // The old appliance's signing key is trusted because the shares vouch for it.
    assert!(
        out.contains(" signature verified (key ")
            && out.contains(", trusted as the custodians' shares) to "),
        "{out}"
    );
    assert!(out.ends_with(&format!(" to {}\n", dest.display())), "{out}");
    assert_same_tree(&src, &restored(&dest, &src));

    // With the old appliance's public key, the signature is verified as well.
    let dest2 = w.join("restored-signed");
    let mut args = vec![
        "restore".to_string(),
        arch.display().to_string(),
        "--to".into(),
        dest2.display().to_string(),
        "--public-key".into(),
        old_pem.display().to_string(),
    ];
    args.extend(share_args(&shares));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = new.run(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(" signature verified (key "),
        "{}",
        stdout(&o)
    );
    assert_same_tree(&src, &restored(&dest2, &src));

    // The replacement backs the restored data up under its own keys and restores it alone.
    let arch2 = w.join("system-new.obx");
    let back = restored(&dest, &src);
    new.backup("system", &back, &arch2);
    let dest3 = w.join("restored-again");
    new.ok(&["restore", s(&arch2), "--to", s(&dest3)]);
    assert_same_tree(&src, &restored(&dest3, &back));
}

// ---------------------------------------------------------------------------------------------
// The private key is nowhere on disk
// ---------------------------------------------------------------------------------------------

/// The encodings of a key that a leak would most likely use.
fn encodings(key: &[u8; 32]) -> Vec<(&'static str, Vec<u8>)> {
    use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXUPPER};
    let b32 = BASE32_NOPAD.encode(key);
    vec![
        ("raw", key.to_vec()),
        ("hex", HEXLOWER.encode(key).into_bytes()),
        ("HEX", HEXUPPER.encode(key).into_bytes()),
        // Without padding: a prefix of the padded forms too.
        ("base32", b32.clone().into_bytes()),
        ("base32 lower case", b32.to_lowercase().into_bytes()),
        ("base64", BASE64_NOPAD.encode(key).into_bytes()),
        ("base64url", BASE64URL_NOPAD.encode(key).into_bytes()),
    ]
}

/// Files under `dir` (not following links), except those under `skip`.
fn files_under(dir: &Path, skip: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for rel in tree(dir) {
        let p = dir.join(&rel);
        if skip.iter().any(|k| p.starts_with(k)) {
            continue;
        }
        if fs::symlink_metadata(&p).unwrap().is_file() {
            out.push(p);
        }
    }
    out
}

/// (file, encoding) for every occurrence of the key in `files`.
fn find_key(files: &[PathBuf], key: &[u8; 32]) -> Vec<(PathBuf, &'static str)> {
    let needles = encodings(key);
    let mut hits = Vec::new();
    for f in files {
        let data = fs::read(f).unwrap();
        for (name, n) in &needles {
            if data.windows(n.len()).any(|w| w == n.as_slice()) {
                hits.push((f.clone(), *name));
            }
        }
    }
    hits
}

/// After a ceremony, a drill, a break-the-glass recovery, a disaster restore and a rotation,
/// neither the old nor the new recovery private key (raw, hex, base32 or base64) is in any
/// file of the config and state directory (config, PIN, SoftHSM token store) or the working
/// files, and not in plain form in the share files either.
#[test]
fn recovery_private_key_is_nowhere_on_disk_but_in_the_shares() {
    let sim = Sim::new();
    let state = sim.path();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let arch = w.join("system.obx");
    sim.backup("system", &src, &arch);
    let first_public = public_key_of(&sim.config());

    // Use the key every way the tool can, with the state directory as working directory so
    // that any stray file would land in the scanned tree. What the commands print is kept in
    // a file that is scanned too.
    let mut printed: Vec<u8> = Vec::new();
    let mut keep = |o: &Output| {
        assert!(o.status.success(), "{}", stderr(o));
        printed.extend_from_slice(&o.stdout);
        printed.extend_from_slice(&o.stderr);
    };
    let o = bare(
        &state,
        &[
            vec!["recovery".to_string(), "verify-shares".into()],
            share_args(&[sim.share(1), sim.share(2), sim.share(3)]),
        ]
        .concat(),
    )
    .output()
    .unwrap();
    keep(&o);
    keep(&recover(
        &state,
        &arch,
        &[sim.share(2), sim.share(4), sim.share(5)],
        &["--output", s(&w.join("recovered.tar"))],
    ));
    let mut args = vec![
        "restore".to_string(),
        arch.display().to_string(),
        "--to".into(),
        w.join("restored").display().to_string(),
    ];
    args.extend(share_args(&[sim.share(1), sim.share(3), sim.share(5)]));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    keep(&sim.run(&argv));
    let rotated = state.join("shares-rotated");
    keep(&ceremony(&sim, "rotate", 5, 3, &rotated));
    printed.extend_from_slice(
        sim.backup("system", &src, &w.join("after-rotation.obx"))
            .as_bytes(),
    );
    fs::write(w.join("command-output.log"), &printed).unwrap();

    // The custodians rebuild both keys from their share files.
    let old = rebuild(&[sim.share(1), sim.share(2), sim.share(3)]);
    let new = rebuild(
        &(3..=5)
            .map(|i| rotated.join(format!("share-{i}-of-5.txt")))
            .collect::<Vec<_>>(),
    );
    assert_eq!(old.public().encode(), first_public);
    assert_eq!(new.public().encode(), public_key_of(&sim.config()));
    assert_ne!(old.expose(), new.expose());

    // The scanner finds a key when it is there.
    let control = w.join("control");
    fs::write(
        &control,
        format!("key = {}\n", data_encoding::BASE64.encode(old.expose())),
    )
    .unwrap();
    // (base64url is the same text when the key's base64 has no + or /.)
    let hits = find_key(std::slice::from_ref(&control), old.expose());
    assert!(hits.contains(&(control.clone(), "base64")), "{hits:?}");
    assert!(
        hits.iter().all(|(_, enc)| enc.starts_with("base64")),
        "{hits:?}"
    );
    fs::remove_file(&control).unwrap();

    let share_dirs = vec![state.join("shares"), rotated.clone()];
    let scanned: Vec<PathBuf> = [
        files_under(&state, &share_dirs),
        files_under(w, &[w.join("system.obx"), w.join("after-rotation.obx")]),
    ]
    .concat();
    let names: Vec<String> = scanned.iter().map(|p| p.display().to_string()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("/offbox.toml")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.contains("/tokens/")), "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with("/recovered.tar")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("/command-output.log")),
        "{names:?}"
    );
    for key in [&old, &new] {
        assert_eq!(find_key(&scanned, key.expose()), vec![], "key leaked");
    }
    // Not in plain form in the shares either: each holds only a Shamir share of it.
    let shares = [
        files_under(&state.join("shares"), &[]),
        files_under(&rotated, &[]),
    ]
    .concat();
    // Five shares and the public signing-keys.pem of each ceremony.
    assert_eq!(shares.len(), 12);
    for key in [&old, &new] {
        assert_eq!(find_key(&shares, key.expose()), vec![]);
    }
}

// ---------------------------------------------------------------------------------------------
// Typed shares
// ---------------------------------------------------------------------------------------------

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

/// Every command that opens an archive with custodian shares leaves an audit line naming the
/// archive and the share indexes: `recover`, `restore --share` and `decrypt --share`.
#[test]
fn every_opening_with_shares_is_audited() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let arch = w.join("system.obx");
    let id = archive_id(&sim.backup("system", &src, &arch));
    destroy_token(&sim);
    let cwd = fresh(w, "cwd");
    let q = vec![sim.share(3), sim.share(1), sim.share(5)];
    let audit_lines = |o: &Output| -> Vec<String> {
        stderr(o)
            .lines()
            .filter(|l| l.contains("AUDIT"))
            .map(str::to_string)
            .collect()
    };

    let o = recover(&cwd, &arch, &q, &["--output", s(&w.join("recovered.tar"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_audit(&stderr(&o), &id, "system", "1,3,5");

    let dest = w.join("restored");
    let mut args = vec![
        "restore".to_string(),
        s(&arch).into(),
        "--to".into(),
        s(&dest).into(),
    ];
    args.extend(share_args(&q));
    let o = bare(&cwd, &args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        audit_lines(&o),
        vec![format!(
            "offbox: AUDIT: restore of archive {id} (system of appliance hsm-sim) to {} with recovery shares 1,3,5",
            dest.display()
        )]
    );

    let out = w.join("decrypted.tar");
    let mut args = vec![
        "decrypt".to_string(),
        s(&arch).into(),
        "--output".into(),
        s(&out).into(),
    ];
    args.extend(share_args(&q));
    let o = bare(&cwd, &args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(w.join("recovered.tar")).unwrap()
    );
    let lines = audit_lines(&o);
    assert!(
        lines.len() == 1
            && lines[0].starts_with("offbox: AUDIT: ")
            && lines[0].contains(&id)
            && lines[0].ends_with(" with recovery shares 1,3,5"),
        "`decrypt --share` opened the archive through its recovery slot without an audit line: {lines:?}"
    );
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

// ---------------------------------------------------------------------------------------------
// Ceremonies
// ---------------------------------------------------------------------------------------------

/// Without a recovery key, backups are refused (with the exact reason) unless
/// `allow_without_recovery = true`; `recovery init` refuses M < 2 and M > N and more than 255
/// shares, writing nothing; a valid ceremony writes private share files, records the public
/// key, and then backups carry a recovery slot. A second `init`, a `rotate` without a key and
/// a ceremony into a non-empty directory are refused.
#[test]
fn ceremony_parameters_and_backups_without_a_recovery_key() {
    let sim = Sim::with_args(&["--no-recovery"], true);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let cfg = sim.config();
    // The config is not world-readable; ceremonies keep it so.
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o640)).unwrap();
    let backup = |name: &str| -> Output {
        sim.cmd(&[
            "backup",
            "create",
            "--kind",
            "system",
            "--source",
            s(&src),
            "--output",
            "-",
        ])
        .stdout(fs::File::create(w.join(name)).unwrap())
        .output()
        .unwrap()
    };

    // No recovery key: refused, and no archive bytes at all.
    let o = backup("refused.obx");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "offbox: error: refusing to back up without a recovery slot: no recovery public key is configured, and an archive whose key is wrapped only by this appliance's HSM or TPM dies with the appliance. Run `offbox recovery init` (a key ceremony, see docs/ceremonies.md), or set recovery.allow_without_recovery = true to accept that risk explicitly\n"
    );
    assert_eq!(fs::metadata(w.join("refused.obx")).unwrap().len(), 0);

    // Rotation needs a key to rotate.
    let out_dir = w.join("shares");
    let before = fs::read(&cfg).unwrap();
    let o = ceremony(&sim, "rotate", 5, 3, &out_dir);
    assert_fails(&o, 4, "no recovery public key is configured; run `offbox recovery init` (a key ceremony) or set recovery.public_key");
    assert!(!out_dir.exists());

    // Bad parameters: clear errors, nothing written, config unchanged.
    for (n, m, message) in [
        ("5", "1", "--threshold 1 is too low: with fewer than 2 shares needed, any single custodian could open every archive; use 2 or more"),
        ("5", "0", "--threshold 0 is too low: with fewer than 2 shares needed, any single custodian could open every archive; use 2 or more"),
        ("3", "4", "--threshold 4 is more than --shares 3: the key could never be rebuilt; use a threshold of at most 3"),
        ("1", "2", "--threshold 2 is more than --shares 1: the key could never be rebuilt; use a threshold of at most 1"),
        ("256", "3", "--shares 256 is more than the 255 allowed"),
    ] {
        let o = sim.run(&[
            "recovery",
            "init",
            "--shares",
            n,
            "--threshold",
            m,
            "--out",
            s(&out_dir),
        ]);
        assert_fails(&o, 4, message);
        assert!(!out_dir.exists(), "--shares {n} --threshold {m}");
        assert_eq!(fs::read(&cfg).unwrap(), before);
    }

    // allow_without_recovery = true: the risk accepted explicitly, the archive has only the
    // device slot, and the shares cannot open it.
    sim.edit_config(|t| format!("{t}\n[recovery]\nallow_without_recovery = true\n"));
    let o = backup("device-only.obx");
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stderr(&o);
    let line = line
        .lines()
        .find(|l| l.starts_with("offbox: backup complete: "))
        .unwrap();
    assert!(line.ends_with(" slots=pkcs11"), "{line}");

    // A valid 2-of-3 ceremony.
    let o = ceremony(&sim, "init", 3, 2, &out_dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let files: Vec<PathBuf> = (1..=3)
        .map(|i| out_dir.join(format!("share-{i}-of-3.txt")))
        .collect();
    assert_eq!(
        tree(&out_dir),
        vec![
            "share-1-of-3.txt",
            "share-2-of-3.txt",
            "share-3-of-3.txt",
            "signing-keys.pem"
        ]
    );
    let key_id = key_id_of(&files[0]);
    let public = public_key_of(&cfg);
    assert!(
        text.starts_with(&format!(
            "offbox: recovery key {key_id} created; 2 of 3 shares open it.\n"
        )),
        "{text}"
    );
    for expected in [
        format!("public key recorded in {}: {public}\n", cfg.display()),
        format!("  - take {} (print it, or copy it to your own offline medium),\n", files[2].display()),
        "  - check it at a drill: offbox recovery verify-shares --share FILE ...,\n".to_string(),
        "Security officer: once every custodian holds a copy, securely delete the share files here (shred -u).\n".to_string(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("ROTATED"), "{text}");
    assert!(
        text.contains(" different 2-share subsets rebuild the key."),
        "{text}"
    );
    assert_eq!(
        fs::metadata(&out_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in &files {
        let meta = fs::metadata(f).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", f.display());
        let t = fs::read_to_string(f).unwrap();
        assert!(t.contains(&format!("key-id: {key_id}\n")));
        assert!(t.contains("threshold: 2\n"));
    }
    let cfg_text = fs::read_to_string(&cfg).unwrap();
    assert!(
        cfg_text.contains(&format!(
            "[recovery]\npublic_key = \"{public}\"\nallow_without_recovery = true\n"
        )),
        "{cfg_text}"
    );
    assert_eq!(
        fs::metadata(&cfg).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    assert!(!w.join("offbox.toml.offbox-tmp").exists());
    assert!(!sim.path().join("offbox.toml.offbox-tmp").exists());
    // Any two shares rebuild it.
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let picked: Vec<PathBuf> = pair.iter().map(|&i| files[i].clone()).collect();
        assert_eq!(rebuild(&picked).public().encode(), public);
    }

    // Now backups carry the recovery slot, and the shares open them.
    let o = backup("with-recovery.obx");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(" slots=pkcs11,recovery"),
        "{}",
        stderr(&o)
    );
    let cwd = fresh(w, "cwd");
    let tar = w.join("with-recovery.tar");
    let o = recover(
        &cwd,
        &w.join("with-recovery.obx"),
        &files[1..],
        &["--output", s(&tar)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The archive made without a recovery slot cannot be opened by shares.
    let dir = fresh(w, "out-device-only");
    let tar = dir.join("device-only.tar");
    let o = recover(
        &cwd,
        &w.join("device-only.obx"),
        &files[1..],
        &["--output", s(&tar)],
    );
    assert_fails(
        &o,
        4,
        "no key slot of this archive can be opened here (slots: pkcs11)",
    );
    assert_nothing_written(&dir, &tar);

    // A second init is refused: that is what rotate is for.
    let again = w.join("again");
    let before = fs::read(&cfg).unwrap();
    let o = ceremony(&sim, "init", 3, 2, &again);
    assert_fails(&o, 1, "recovery init failed: the config already has a recovery public key; use `offbox recovery rotate` to replace it");
    assert!(!again.exists());
    assert_eq!(fs::read(&cfg).unwrap(), before);

    // A ceremony never writes into a directory that holds files (shares would be mixed up).
    let o = ceremony(&sim, "rotate", 3, 2, &out_dir);
    assert_fails(
        &o,
        1,
        &format!(
            "writing shares to {} failed: the directory is not empty; give a new directory so that no share is overwritten",
            out_dir.display()
        ),
    );
    assert_eq!(fs::read(&cfg).unwrap(), before);
    assert_eq!(tree(&out_dir).len(), 4);
}

/// The drill: `recovery verify-shares` says OK for a quorum, refuses fewer, a damaged share,
/// shares of two ceremonies and a missing file, and writes nothing anywhere. It needs no
/// config, token or environment.
#[test]
fn verify_shares_drill_writes_nothing() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let key_id = key_id_of(&sim.share(1));
    let (other, other_id) = other_ceremony(&sim, w);
    let bad = w.join("bad-share-2.txt");
    fs::write(&bad, edit_share(&sim.share(2), |c| typo(c, 60))).unwrap();
    let before = snapshot(&sim.path());
    let cwd = fresh(w, "cwd");
    let drill = |files: &[PathBuf], json: bool| -> Output {
        let mut args = vec!["recovery".to_string(), "verify-shares".into()];
        if json {
            args.insert(0, "--json".into());
        }
        args.extend(share_args(files));
        bare(&cwd, &args).output().unwrap()
    };

    let o = drill(&[sim.share(1), sim.share(2), sim.share(3)], false);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("offbox: shares 1,2,3 rebuild recovery key {key_id}: OK (nothing was written)\n")
    );
    let all: Vec<PathBuf> = (1..=5).rev().map(|i| sim.share(i)).collect();
    let o = drill(&all, false);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "offbox: shares 1,2,3,4,5 rebuild recovery key {key_id}: OK (nothing was written)\n"
        )
    );
    let o = drill(&[sim.share(5), sim.share(2), sim.share(4)], true);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"ok": true, "key_id": key_id, "shares": "2,4,5"})
    );
    // The other ceremony's shares check out against their own key.
    let o = drill(
        &(1..=3)
            .map(|i| other.join(format!("share-{i}-of-5.txt")))
            .collect::<Vec<_>>(),
        false,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&other_id));

    let other4 = other.join("share-4-of-5.txt");
    let missing = w.join("no-such-share.txt");
    for (files, code, message) in [
        (
            vec![sim.share(3), sim.share(5)],
            4,
            format!("2 distinct share(s) given, but recovery key {key_id} needs 3; bring more custodians"),
        ),
        (
            vec![sim.share(1)],
            4,
            format!("1 distinct share(s) given, but recovery key {key_id} needs 3; bring more custodians"),
        ),
        (
            vec![sim.share(1), bad.clone(), sim.share(3)],
            4,
            format!("share {} is damaged or mistyped (checksum mismatch); check it character by character against the custodian's copy", bad.display()),
        ),
        (
            vec![sim.share(1), sim.share(3), other4.clone()],
            4,
            format!("share {} belongs to recovery key {other_id}, the others to {key_id}; use shares of one ceremony only", other4.display()),
        ),
        (
            vec![sim.share(1), sim.share(3), missing.clone()],
            1,
            format!("reading share file {} failed: No such file or directory (os error 2)", missing.display()),
        ),
    ] {
        assert_fails(&drill(&files, false), code, &message);
    }
    // Without files and without input: no shares.
    let o = bare(&cwd, &["recovery", "verify-shares"]).output().unwrap();
    assert_fails(&o, 4, "the recovery slot needs the custodians' shares");

    assert_eq!(snapshot(&sim.path()), before, "the drill changed the state");
    assert_eq!(tree(&cwd), Vec::<String>::new());
}

/// `recovery rotate` makes a new key and new shares, says that old archives still need the
/// old shares, and it is so: an archive made before the rotation opens with the old shares
/// only, one made after with the new shares only.
#[test]
fn rotation_makes_new_shares_and_old_archives_keep_the_old_ones() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let before_data = pattern(20_000, 21);
    let after_data = pattern(30_000, 22);
    fs::write(w.join("before.bin"), &before_data).unwrap();
    fs::write(w.join("after.bin"), &after_data).unwrap();
    let a1 = w.join("before.obx");
    let a2 = w.join("after.obx");
    let id1 = archive_id(&sim.backup("secrets", &w.join("before.bin"), &a1));
    let old_id = key_id_of(&sim.share(1));
    let old_public = public_key_of(&sim.config());

    let rotated = w.join("rotated");
    let o = ceremony(&sim, "rotate", 5, 3, &rotated);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let new_share = |i: u32| rotated.join(format!("share-{i}-of-5.txt"));
    let new_id = key_id_of(&new_share(1));
    assert_ne!(new_id, old_id);
    let new_public = public_key_of(&sim.config());
    assert_ne!(new_public, old_public);
    assert!(
        text.starts_with(&format!(
            "offbox: recovery key {new_id} created; 3 of 5 shares open it.\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ROTATED: archives made before now still need the OLD shares (key {old_id}); keep them until those archives expire.\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "public key recorded in {}: {new_public}\n",
            sim.config().display()
        )),
        "{text}"
    );
    // The old public key is gone from the config (public_key_of checks there is one line).
    assert!(!fs::read_to_string(sim.config())
        .unwrap()
        .contains(&old_public));

    let id2 = archive_id(&sim.backup("secrets", &w.join("after.bin"), &a2));
    destroy_token(&sim);
    let cwd = fresh(w, "cwd");
    let old_q = vec![sim.share(1), sim.share(2), sim.share(3)];
    let new_q = vec![new_share(3), new_share(4), new_share(5)];

    // Before the rotation: the old shares open it...
    let out = w.join("before.out");
    let o = recover(&cwd, &a1, &old_q, &["--output", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), before_data);
    assert_audit(&stderr(&o), &id1, "secrets", "1,2,3");
    // ...the new ones do not.
    let dir = fresh(w, "out-a1-new");
    let out = dir.join("payload");
    assert_fails(
        &recover(&cwd, &a1, &new_q, &["--output", s(&out)]),
        4,
        &format!("the archive's recovery slot was made for recovery key {old_id}, but the shares reconstruct another recovery key ({new_id}); bring the shares of the ceremony that made key {old_id}"),
    );
    assert_nothing_written(&dir, &out);

    // After the rotation: the new shares open it, the old ones do not.
    let out = w.join("after.out");
    let o = recover(&cwd, &a2, &new_q, &["--output", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), after_data);
    assert_audit(&stderr(&o), &id2, "secrets", "3,4,5");
    let dir = fresh(w, "out-a2-old");
    let out = dir.join("payload");
    assert_fails(
        &recover(&cwd, &a2, &old_q, &["--output", s(&out)]),
        4,
        &format!("the archive's recovery slot was made for recovery key {new_id}, but the shares reconstruct another recovery key ({old_id}); bring the shares of the ceremony that made key {new_id}"),
    );
    assert_nothing_written(&dir, &out);

    // Old and new shares do not mix.
    let mixed = vec![sim.share(1), sim.share(2), new_share(3)];
    assert_fails(
        &recover(&cwd, &a1, &mixed, &["--output", s(&out)]),
        4,
        &format!(
            "share {} belongs to recovery key {new_id}, the others to {old_id}; use shares of one ceremony only",
            new_share(3).display()
        ),
    );
    assert_nothing_written(&dir, &out);
}

// ---------------------------------------------------------------------------------------------
// The secrets export command
// ---------------------------------------------------------------------------------------------

/// `[secrets] export_command` is run and its output streamed into the archive; after the
/// token is gone, the shares bring back exactly what the command wrote.
#[test]
fn secrets_export_command_is_streamed_and_recovers_byte_exact() {
    let sim = Sim::new();
    sim.small_segments();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let blob = pattern(150_000, 11);
    let blob_file = w.join("blob.bin");
    fs::write(&blob_file, &blob).unwrap();
    let mut expected = blob.clone();
    for i in 0..5000 {
        expected.extend_from_slice(format!("record {i}\n").as_bytes());
    }
    set_export_command(
        &sim,
        &[
            "sh",
            "-c",
            r#"cat "$0" && i=0 && while [ $i -lt 5000 ]; do printf 'record %d\n' $i; i=$((i+1)); done"#,
            s(&blob_file),
        ],
    );
    let arch = w.join("secrets.obx");
    let o = backup_secrets_from_export(&sim, &arch);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "offbox: backup complete: kind=secrets archive={} in=",
            archive_id(&err)
        )),
        "{err}"
    );
    let id = archive_id(&err);
    let v = stdout(&sim.run(&["verify", s(&arch)]));
    assert!(v.starts_with("offbox: verify OK: kind=secrets"), "{v}");
    assert!(
        v.contains(&format!(" payload_bytes={} ", expected.len())),
        "{v}"
    );

    destroy_token(&sim);
    let cwd = fresh(w, "cwd");
    let out = w.join("export.out");
    let o = recover(
        &cwd,
        &arch,
        &[sim.share(2), sim.share(3), sim.share(5)],
        &["--output", s(&out)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), expected);
    assert_audit(&stderr(&o), &id, "secrets", "2,3,5");
}

/// An export command that fails (after writing part of its output, or none) fails the backup
/// with a non-zero exit; the bytes written so far are not a valid archive: `verify`, `decrypt`
/// and `recover` all refuse them, and nothing is decrypted to disk.
#[test]
fn a_failing_export_command_fails_the_backup_and_leaves_no_valid_archive() {
    let sim = Sim::new();
    sim.small_segments();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let blob_file = w.join("blob.bin");
    // More than the output buffers hold: part of the archive is out when the export fails.
    fs::write(&blob_file, pattern(8 << 20, 13)).unwrap();
    let cwd = fresh(w, "cwd");
    let q = vec![sim.share(1), sim.share(3), sim.share(5)];
    let base = fs::read_to_string(sim.config()).unwrap();

    let cases: [(&str, Vec<&str>, &str); 3] = [
        (
            "half-written",
            vec![
                "sh",
                "-c",
                r#"cat "$0"; echo 'vault export: database locked' >&2; exit 7"#,
                s(&blob_file),
            ],
            "exit status: 7",
        ),
        (
            "nothing-written",
            vec!["sh", "-c", "exit 3"],
            "exit status: 3",
        ),
        (
            "killed",
            vec!["sh", "-c", r#"cat "$0"; kill -9 $$"#, s(&blob_file)],
            "signal: 9 (SIGKILL)",
        ),
    ];
    for (name, argv, status) in cases {
        fs::write(sim.config(), &base).unwrap();
        set_export_command(&sim, &argv);
        let arch = w.join(format!("{name}.obx"));
        let o = backup_secrets_from_export(&sim, &arch);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!(
                "the export command sh failed ({status}); the archive was not finished"
            )),
            "{name}: {err}"
        );
        assert!(err.contains("offbox: error: "), "{name}: {err}");
        assert!(!err.contains("backup complete"), "{name}: {err}");
        let len = fs::metadata(&arch).unwrap().len();
        if name == "nothing-written" {
            assert_eq!(len, 0, "{name}: {len} bytes");
        } else {
            // Many segments did go out before the failure: they must not pass for an archive.
            assert!(len > 1 << 20, "{name}: {len} bytes");
        }
        if name == "half-written" {
            assert!(err.contains("vault export: database locked"), "{err}");
        }

        // Rejected as an integrity failure (exit 3) by every reader.
        let rejected = |o: &Output, what: &str| {
            let e = stderr(o);
            assert_eq!(o.status.code(), Some(3), "{name}: {what}: {e}");
            assert!(
                e.contains(" failed authentication: the archive was modified, reordered, truncated or extended")
                    || e.contains(": it was truncated; copy it again from the target")
                    // An export that fails before its first byte fails the backup before
                    // the archive header is written: the file is empty.
                    || e.contains("the archive header is truncated"),
                "{name}: {what}: {e}"
            );
        };
        let o = sim.run(&["verify", s(&arch)]);
        rejected(&o, "verify");
        assert!(o.stdout.is_empty(), "{name}: {}", stdout(&o));

        let dir = fresh(w, &format!("out-{name}"));
        let out = dir.join("payload");
        rejected(
            &sim.run(&["decrypt", s(&arch), "--output", s(&out)]),
            "decrypt",
        );
        assert_nothing_written(&dir, &out);
        let o = recover(&cwd, &arch, &q, &["--output", s(&out)]);
        rejected(&o, "recover");
        assert!(!stderr(&o).contains("offbox: decrypted"), "{name}");
        assert_nothing_written(&dir, &out);
    }

    // A command that cannot start: refused before any archive byte.
    fs::write(sim.config(), &base).unwrap();
    set_export_command(&sim, &["/nonexistent/vault-export"]);
    let arch = w.join("no-command.obx");
    let o = backup_secrets_from_export(&sim, &arch);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("offbox: error: the secrets export failed: cannot start /nonexistent/vault-export: No such file or directory (os error 2); check secrets.export_command in the config"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::metadata(&arch).unwrap().len(), 0);
}

/// Share files are read with a size limit: `--share /dev/zero` is refused at once, naming the
/// file, and nothing is opened.
#[test]
fn an_endless_share_file_is_refused_not_read() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let arch = w.join("system.obx");
    sim.backup("system", &src, &arch);
    let cwd = fresh(w, "cwd");
    let out = cwd.join("payload");
    let shares = vec![sim.share(1), PathBuf::from("/dev/zero"), sim.share(3)];
    let t0 = Instant::now();
    let o = recover(&cwd, &arch, &shares, &["--output", s(&out)]);
    assert_fails(
        &o,
        4,
        "share /dev/zero is damaged or mistyped (it is larger than 65536 bytes, so it is not a share file); check it character by character against the custodian's copy",
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_nothing_written(&cwd, &out);
}
