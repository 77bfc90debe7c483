//! The recovery private key is nowhere on disk but in the shares: not after a ceremony, a
//! drill, a break-the-glass recovery, a disaster restore or a rotation, in no common encoding.

mod common;
#[path = "common/recovery.rs"]
mod rc;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{stderr, tree, Sim};
use rc::*;

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
