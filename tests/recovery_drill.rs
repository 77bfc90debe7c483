//! The share drill (`recovery verify-shares`): a quorum is confirmed, anything less or wrong
//! is refused, and nothing is written anywhere; it needs no config, token or environment.

mod common;
#[path = "common/recovery.rs"]
mod rc;

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use common::{stderr, tree, Sim};
use rc::*;

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
