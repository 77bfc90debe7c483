//! What a video run sends: the recordings found, compared with the previous restore point's
//! manifest by their metadata (size, times, device, inode: a changed file always changes
//! one of them), or by content when asked to re-hash.

use std::collections::HashMap;

use super::hash::hash_file;
use super::manifest::{ArchiveRef, Manifest, Record};
use super::scan::Scan;
use crate::payload::Notice;

/// What a run does with one recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Unchanged: its record is the previous point's, and its bytes stay where they are.
    Carry,
    /// New or changed: read and stored in this archive.
    Send,
    /// New and still being written: not part of this point.
    Skip,
}

/// The plan of one run. It works in place on the walk's records, so that a run holds one
/// record per recording, not several: `records[i]` is the previous point's record when
/// `actions[i]` is [`Action::Carry`], the fresh metadata otherwise.
#[derive(Debug, Default)]
pub struct Plan {
    /// Every recording found, sorted by path.
    pub records: Vec<Record>,
    /// What to do with each.
    pub actions: Vec<Action>,
    /// The previous point's version of a recording to send (by index), kept for this
    /// point if the file changes while it is read.
    pub previous: HashMap<usize, Record>,
    /// The archives that carried records (and previous versions) need; the new archive is
    /// appended by the writer.
    pub archives: Vec<ArchiveRef>,
    /// Files skipped because they were modified within the settle time (still being
    /// recorded) and had no earlier version.
    pub settling_new: u64,
    /// Files modified within the settle time whose previous version stays in the point.
    pub settling_kept: u64,
    /// Records of the previous point that are gone from the appliance.
    pub deleted: u64,
    /// Bytes to read.
    pub send_bytes: u64,
    /// Notices of the scan and of the re-hash.
    pub notices: Vec<Notice>,
}

/// Compares the scan with the previous point. `present` says whether an archive still exists
/// on the target: a record whose archive is gone is sent again. `settle_before`: files with
/// an mtime after this Unix time (now less `settle_secs`) are still being written. `rehash`:
/// hash unchanged files and send those whose content differs.
pub fn plan(
    scan: Scan,
    previous: Option<Manifest>,
    present: &dyn Fn(&ArchiveRef) -> bool,
    settle_before: i64,
    rehash: bool,
) -> Plan {
    let mut p = Plan {
        notices: scan.notices,
        actions: Vec::with_capacity(scan.files.len()),
        records: scan.files,
        ..Plan::default()
    };
    let (old_archives, old_records) = match previous {
        Some(m) => (m.archives, m.records),
        None => (Vec::new(), Vec::new()),
    };
    // Old archive index -> new index, for the archives kept.
    let mut remap: HashMap<u32, u32> = HashMap::new();
    let mut archives = Vec::new();
    let mut keep_ref = |mut r: Record| -> Option<Record> {
        let a = &old_archives[r.archive as usize];
        if !present(a) {
            return None;
        }
        r.archive = *remap.entry(r.archive).or_insert_with(|| {
            archives.push(a.clone());
            (archives.len() - 1) as u32
        });
        Some(r)
    };
    let mut old = old_records.into_iter().peekable();
    for i in 0..p.records.len() {
        let now = &p.records[i];
        // Old records before this path are deleted on the appliance.
        while old.peek().is_some_and(|o| o.path < now.path) {
            old.next();
            p.deleted += 1;
        }
        let prev = old.next_if(|o| o.path == now.path).and_then(&mut keep_ref);
        let action = if now.mtime > settle_before {
            if prev.is_some() {
                p.settling_kept += 1;
            } else {
                p.settling_new += 1;
            }
            prev.map_or(Action::Skip, |r| {
                p.records[i] = r;
                Action::Carry
            })
        } else {
            match prev {
                Some(r)
                    if r.same_metadata(now)
                        && (!rehash || same_content(now, &r, &mut p.notices)) =>
                {
                    p.records[i] = r;
                    Action::Carry
                }
                prev => {
                    p.send_bytes += now.size;
                    if let Some(r) = prev {
                        p.previous.insert(i, r);
                    }
                    Action::Send
                }
            }
        };
        p.actions.push(action);
    }
    p.deleted += old.count() as u64;
    p.archives = archives;
    p
}

/// For `--rehash`: true when the file still has the recorded content.
fn same_content(now: &Record, r: &Record, notices: &mut Vec<Notice>) -> bool {
    match hash_file(&format!("/{}", now.path)) {
        Ok(h) => h == r.sha256,
        Err(e) => {
            notices.push(Notice {
                path: format!("/{}", now.path),
                what: format!("cannot be re-hashed ({e}); sent again"),
            });
            false
        }
    }
}

impl Plan {
    /// The archive ids the new point depends on besides itself, sorted.
    pub fn depends_on(&self) -> Vec<[u8; 16]> {
        let mut ids: Vec<[u8; 16]> = self.archives.iter().map(|a| a.id).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Recordings whose bytes this run stores.
    pub fn send_count(&self) -> u64 {
        self.actions.iter().filter(|a| **a == Action::Send).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::videos::manifest::MANIFEST_FORMAT;

    fn rec(path: &str, size: u64, mtime: i64, archive: u32) -> Record {
        Record {
            path: path.into(),
            size,
            mtime,
            mtime_nsec: 0,
            ctime: mtime,
            ctime_nsec: 0,
            dev: 1,
            ino: size,
            mode: 0o640,
            uid: 0,
            gid: 0,
            sha256: [size as u8; 32],
            archive,
        }
    }

    fn aref(n: u8) -> ArchiveRef {
        ArchiveRef {
            id: [n; 16],
            name: format!("a{n}"),
        }
    }

    #[test]
    fn carries_sends_counts_and_remaps() {
        let previous = Manifest {
            format: MANIFEST_FORMAT,
            archive_id: [2; 16],
            archives: vec![aref(1), aref(2), aref(3)],
            records: vec![
                rec("a", 10, 100, 0),    // unchanged: carried from a1
                rec("b", 20, 100, 1),    // modified: sent, previous kept aside
                rec("c", 30, 100, 2),    // deleted on the appliance
                rec("d", 40, 100, 2),    // being written again: previous stays
                rec("gone", 50, 100, 2), // its archive was pruned: sent again
            ],
        };
        let scan = Scan {
            files: vec![
                rec("a", 10, 100, 0),
                rec("b", 21, 150, 0),
                rec("d", 41, 1000, 0),
                rec("e", 5, 1000, 0), // new, being written: skipped
                rec("f", 6, 100, 0),  // new
                rec("gone", 50, 100, 0),
            ],
            notices: vec![],
        };
        // a3 is no longer on the target.
        let present = |a: &ArchiveRef| a.id != [3; 16];
        let p = plan(scan, Some(previous), &present, 900, false);
        let shape: Vec<String> = p
            .records
            .iter()
            .zip(&p.actions)
            .enumerate()
            .map(|(i, (r, a))| match a {
                Action::Carry => format!("carry {} @{}", r.path, r.archive),
                Action::Send => format!(
                    "send {} prev={:?}",
                    r.path,
                    p.previous.get(&i).map(|r| r.archive)
                ),
                Action::Skip => format!("skip {}", r.path),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "carry a @0",
                "send b prev=Some(1)",
                "skip d",
                "skip e",
                "send f prev=None",
                "send gone prev=None"
            ]
        );
        // d's previous archive (a3) is gone, so d is neither carried nor kept: it is new
        // and still being written.
        assert_eq!((p.settling_new, p.settling_kept, p.deleted), (2, 0, 1));
        assert_eq!(p.archives, vec![aref(1), aref(2)]);
        assert_eq!(p.depends_on(), vec![[1; 16], [2; 16]]);
        assert_eq!(p.send_bytes, 21 + 6 + 50);
        assert_eq!(p.send_count(), 3);
    }
}
