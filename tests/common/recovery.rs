//! Helpers of the recovery suites (tests/break_the_glass.rs, tests/recovery_*.rs): running
//! `offbox` as at a break-the-glass, share files and codes, ceremonies, trees to compare, and
//! the assertions that nothing was written and that every opening was audited. Include with
//! `#[path = "common/recovery.rs"] mod rc;` next to `mod common;`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::common::{bin, pattern, stderr, tree, Sim};
use offbox::keys::recovery::share::{combine, Share};
use offbox::keys::recovery::RecoverySecret;

pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `offbox ARGS` as at a break-the-glass: the environment holds PATH and nothing else (no
/// SOFTHSM2_CONF, no OFFBOX_CONFIG, no HOME), run from `cwd`, standard input closed.
pub fn bare<S: AsRef<OsStr>>(cwd: &Path, args: &[S]) -> Command {
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
pub fn share_args(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| ["--share".to_string(), f.display().to_string()])
        .collect()
}

/// `offbox recover ARCHIVE --share ... EXTRA...` with the bare environment.
pub fn recover(cwd: &Path, archive: &Path, shares: &[PathBuf], extra: &[&str]) -> Output {
    let mut args = vec!["recover".to_string(), archive.display().to_string()];
    args.extend(share_args(shares));
    args.extend(extra.iter().map(|a| a.to_string()));
    bare(cwd, &args).output().unwrap()
}

/// Runs `cmd` with `input` on its standard input.
pub fn with_stdin(mut cmd: Command, input: &str) -> Output {
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
pub fn destroy_token(sim: &Sim) {
    let tokens = sim.path().join("tokens");
    fs::remove_dir_all(&tokens).unwrap();
    assert!(!tokens.exists());
}

/// The archive id from a `backup complete` line.
pub fn archive_id(backup_stderr: &str) -> String {
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
pub fn key_id_of(share_file: &Path) -> String {
    fs::read_to_string(share_file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("key-id: ").map(str::to_string))
        .unwrap()
}

/// The typable code of a share file (its last non-empty line).
pub fn code_of(share_file: &Path) -> String {
    let text = fs::read_to_string(share_file).unwrap();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap()
        .to_string()
}

/// The public key line of a config.
pub fn public_key_of(config: &Path) -> String {
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
pub fn fresh(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir(&d).unwrap();
    d
}

/// `offbox recovery init|rotate --shares N --threshold M --out DIR`.
pub fn ceremony(sim: &Sim, verb: &str, shares: u32, threshold: u32, out: &Path) -> Output {
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

/// "Nothing written": neither the output file nor its temporary `.offbox-partial` twin exist,
/// and the directory they would be in is still empty.
pub fn assert_nothing_written(dir: &Path, output: &Path) {
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
pub fn assert_fails(o: &Output, code: i32, message: &str) {
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
pub fn assert_audit(err: &str, archive_id: &str, kind: &str, indexes: &str) {
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
    // The creation time in RFC 3339, UTC: 2026-12-01T23:36:02Z.
    let created = &l[prefix.len()..l.len() - suffix.len()];
    let shape = created.bytes().enumerate().all(|(i, c)| match i {
        4 | 7 => c == b'-',
        10 => c == b'T',
        13 | 16 => c == b':',
        19 => c == b'Z',
        _ => c.is_ascii_digit(),
    });
    assert!(created.len() == 20 && shape, "{l}");
    assert!(created[..4].parse::<u32>().unwrap() >= 2020, "{l}");
}

/// The code text with the `nth` base32 character (dashes not counted) changed to another
/// base32 character: a typo the checksum must catch.
pub fn typo(code: &str, nth: usize) -> String {
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
pub fn forged(code: &str) -> String {
    let raw: String = code.chars().filter(|c| *c != '-').collect();
    let mut bin = data_encoding::BASE32_NOPAD.decode(raw.as_bytes()).unwrap();
    assert_eq!(bin.len(), 48);
    bin[20] ^= 0x01;
    let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bin[..44]);
    bin[44..].copy_from_slice(&sum.as_ref()[..4]);
    data_encoding::BASE32_NOPAD.encode(&bin)
}

/// A share file's text with its code replaced by `f(code)`.
pub fn edit_share(file: &Path, f: impl FnOnce(&str) -> String) -> String {
    let text = fs::read_to_string(file).unwrap();
    let code = code_of(file);
    let new = f(&code);
    assert_ne!(new, code);
    text.replace(&code, &new)
}

/// Another key ceremony (another recovery key, made on another appliance's token, whose
/// signing key its shares record); returns its share directory and key id.
pub fn other_ceremony(_sim: &Sim, work: &Path) -> (PathBuf, String) {
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
pub fn rebuild(files: &[PathBuf]) -> RecoverySecret {
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
pub fn make_tree(root: &Path) {
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
pub fn restored(dest: &Path, src: &Path) -> PathBuf {
    dest.join(src.strip_prefix("/").unwrap())
}

/// Same entries, types, modes, contents, link targets and file mtimes.
pub fn assert_same_tree(a: &Path, b: &Path) {
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
pub fn snapshot(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
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
pub fn toml_str(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Sets `[secrets] export_command = [ARGV...]`.
pub fn set_export_command(sim: &Sim, argv: &[&str]) {
    let list = argv
        .iter()
        .map(|a| toml_str(a))
        .collect::<Vec<_>>()
        .join(", ");
    sim.edit_config(|t| format!("{t}\n[secrets]\nexport_command = [{list}]\n"));
}

/// `backup create --kind secrets --output -` (payload from the export command) into `archive`.
pub fn backup_secrets_from_export(sim: &Sim, archive: &Path) -> Output {
    sim.cmd(&["backup", "create", "--kind", "secrets", "--output", "-"])
        .stdout(fs::File::create(archive).unwrap())
        .output()
        .unwrap()
}
