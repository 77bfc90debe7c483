//! Tests of retention, prune and the cleanup of leftover temporaries.

use super::*;
use std::time::Duration;

fn l(app: &str, kind: &str, t: i64) -> Listed {
    let info = ArchiveName::new(app, kind, t, "0123abcd");
    Listed {
        name: info.to_string(),
        size: None,
        info,
    }
}

#[test]
fn retention() {
    let day = 86_400;
    let now = 100 * day;
    let a = vec![
        l("me", "system", now - 1),
        l("me", "system", now - 2 * day),
        l("me", "system", now - 10 * day),
        l("me", "secrets", now - 50 * day),
        l("other", "system", now - 90 * day),
    ];
    let keep = |p: &PrunePlan| p.keep.len();
    let p = plan_prune(
        &a,
        "me",
        Retention {
            keep_last: Some(1),
            keep_within_days: None,
        },
        now,
    )
    .unwrap();
    assert_eq!((keep(&p), p.delete.len()), (2, 2), "{p:?}");
    let p = plan_prune(
        &a,
        "me",
        Retention {
            keep_last: None,
            keep_within_days: Some(3),
        },
        now,
    )
    .unwrap();
    assert_eq!(
        p.delete,
        vec![a[2].name.clone()],
        "newest secrets kept though old"
    );
    let p = plan_prune(
        &a,
        "me",
        Retention {
            keep_last: Some(0),
            keep_within_days: Some(0),
        },
        now,
    )
    .unwrap();
    assert_eq!(keep(&p), 2, "the newest of each kind survives");
    assert!(!p.delete.contains(&a[4].name), "never another appliance's");
    assert!(plan_prune(
        &a,
        "me",
        Retention {
            keep_last: None,
            keep_within_days: None
        },
        now
    )
    .is_err());
}

/// A target directory in memory: enough for listing, prune and cleanup.
struct MemTarget {
    files: Vec<String>,
}

impl Target for MemTarget {
    fn url(&self) -> String {
        "mem://".into()
    }
    fn begin(&mut self, _: &str) -> Result<Box<dyn Upload>, TargetError> {
        unimplemented!("not needed by these tests")
    }
    fn list(&mut self) -> Result<Vec<targets::Entry>, TargetError> {
        Ok(self
            .files
            .iter()
            .map(|n| targets::Entry {
                name: n.clone(),
                size: Some(1),
            })
            .collect())
    }
    fn open(&mut self, _: &str) -> Result<Box<dyn Read + Send>, TargetError> {
        unimplemented!("not needed by these tests")
    }
    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        self.files.retain(|f| f != name);
        Ok(())
    }
    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        Ok(None)
    }
}

fn lock() -> (tempfile::TempDir, RunLock) {
    let d = tempfile::tempdir().unwrap();
    let l = RunLock::acquire(d.path(), Duration::ZERO, |_| {}).unwrap();
    (d, l)
}

#[test]
fn prune_deletes_only_exact_names_of_this_appliance() {
    let now = now_unix();
    let old = |app: &str, days: i64| l(app, "system", now - days * 86_400).name;
    let mine_newest = old("pam01", 1);
    let mine_old = old("pam01", 30);
    let running_temp = crate::targets::temp_name("pam01");
    let look_alikes = vec![
        old("pam02", 40),
        old("pam01-b", 40),
        old("pam.01", 40),
        old("pam_01", 40),
        "offbox-pam01-system-garbage.obx".to_string(),
        mine_old.replace(".obx", ".obx.part"),
        mine_old.to_uppercase(),
        mine_old.replacen("offbox-pam01", "offbox-pam01-x", 1),
        running_temp.clone(),
        ".offbox-tmp.pam01.0123456789abcdef".into(),
        "offbox-pam01-system-20200230T000000Z-0123abcd.obx".into(),
        "offbox-pam01-system-20200101T000000Z-0123ABCD.obx".into(),
    ];
    let mut files = look_alikes.clone();
    files.push(mine_newest.clone());
    files.push(mine_old.clone());
    let mut t = MemTarget { files };
    let (_d, held) = lock();
    let rules = Retention {
        keep_last: Some(1),
        keep_within_days: None,
    };
    let plan = prune(&mut t, "pam01", rules, false, &held).unwrap();
    assert_eq!(plan.delete, vec![mine_old.clone()], "{plan:?}");
    assert_eq!(plan.keep, vec![mine_newest.clone()]);
    for f in &look_alikes {
        assert!(t.files.contains(f), "{f} was deleted");
    }
    assert!(!t.files.contains(&mine_old));
}

#[test]
fn cleanup_removes_only_dead_runs_temporaries_of_this_appliance() {
    let dead = ".offbox-tmp.pam01.4194305-00000000.0123456789abcdef".to_string();
    let legacy = ".offbox-tmp.pam01.0123456789abcdef".to_string();
    let running = crate::targets::temp_name("pam01");
    let others = vec![
        crate::targets::temp_name("pam02"),
        ".offbox-tmp.pam_2e01.4194305-00000000.0123456789abcdef".to_string(),
        ".offbox-tmp.pam01-b.4194305-00000000.0123456789abcdef".to_string(),
        l("pam01", "system", 1_795_000_000).name,
    ];
    let mut files = others.clone();
    files.extend([dead.clone(), legacy.clone(), running.clone()]);
    let mut t = MemTarget { files };
    let (_d, held) = lock();
    let done = remove_stale_temporaries(&mut t, "pam01", &held).unwrap();
    let mut removed = done.removed.clone();
    removed.sort();
    let mut want = vec![dead, legacy];
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(
        done.kept,
        vec![running.clone()],
        "a live run's temporary is kept"
    );
    for f in others.iter().chain([&running]) {
        assert!(t.files.contains(f), "{f} was deleted");
    }
}
