//! The rotation ceremony (`recovery rotate`): new key and shares; archives made before it
//! open with the old shares only, archives made after with the new shares only.

mod common;
#[path = "common/recovery.rs"]
mod rc;

use common::{pattern, stderr, Sim};
use rc::*;
use std::fs;

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
