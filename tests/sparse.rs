//! Sparse files, access times and files that change while read, through the real CLI:
//! a 1 GiB file holding 1 MiB of data costs about 1 MiB in the archive and on restore
//! (offbox's and GNU tar's), the backup leaves atimes alone, and a file growing during the
//! backup is summarised in the JSON and on the confirmation line.

#[path = "common/attrs.rs"]
mod attrs;
mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use attrs::{du, same_content, sh, sparse_file};

const GIB: u64 = 1 << 30;

#[test]
fn a_sparse_gib_costs_its_data_in_the_archive_and_on_restore() {
    let sim = common::Sim::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    let disk = src.join("disk.img");
    sparse_file(
        &disk,
        GIB,
        &common::pattern(512 << 10, 1),
        &common::pattern(512 << 10, 2),
    );
    // A file that is all hole, and one with a hole at its end only.
    fs::File::create(src.join("empty-but-big"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let tail_hole = src.join("tail-hole");
    fs::write(&tail_hole, common::pattern(10_000, 3)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&tail_hole)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let (alloc, apparent) = du(&disk);
    assert!(
        alloc < 2048 && apparent == GIB >> 10,
        "the source is not sparse: {alloc} KiB"
    );

    let archive = work.path().join("a.obx");
    let t = Instant::now();
    let err = sim.backup("system", &src, &archive);
    let took = t.elapsed();
    eprintln!("backup of a sparse 1 GiB file: {took:?} ({err})");
    assert!(
        took.as_secs() < 20,
        "the sparse file was read as zeros? {took:?}"
    );
    let size = fs::metadata(&archive).unwrap().len();
    assert!(size < 2 << 20, "archive of {size} bytes for 1 MiB of data");

    let dest = work.path().join("out");
    sim.ok(&[
        "restore",
        archive.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ]);
    let back = dest.join(src.strip_prefix("/").unwrap());
    let names = ["disk.img", "empty-but-big", "tail-hole"];
    for name in names {
        let (a, b) = (src.join(name), back.join(name));
        assert_eq!(du(&a), du(&b), "{name}: allocation differs");
        assert!(same_content(&a, &b), "{name}: content differs");
        let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        assert_eq!((ma.mode(), ma.mtime()), (mb.mode(), mb.mtime()), "{name}");
    }

    gnu_tar_restores_the_holes(&sim, &archive, &src, &names);
}

#[test]
fn backup_leaves_access_times_alone() {
    let sim = common::Sim::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/file"), b"read me").unwrap();
    let paths = [src.join("dir/file"), src.join("dir")];
    for p in &paths {
        // An old atime: relatime would update it on any read.
        sh(
            Path::new("/"),
            "touch",
            &["-a", "-d", "2001-02-03 04:05:06", p.to_str().unwrap()],
        );
    }
    let before: Vec<i64> = paths
        .iter()
        .map(|p| fs::metadata(p).unwrap().atime())
        .collect();
    sim.backup("system", &src, &work.path().join("a.obx"));
    let after: Vec<i64> = paths
        .iter()
        .map(|p| fs::metadata(p).unwrap().atime())
        .collect();
    assert_eq!(before, after, "the backup changed access times");
    // The check is meaningful: a plain read does update it here.
    let _ = fs::read(src.join("dir/file")).unwrap();
    let touched = fs::metadata(src.join("dir/file")).unwrap().atime();
    if touched == before[0] {
        eprintln!("note: this mount does not update atimes (noatime); the check proves little");
    }
}

#[test]
fn files_changed_while_read_are_summarised() {
    let sim = common::Sim::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    let log = src.join("growing.log");
    fs::write(&log, common::pattern(32 << 20, 5)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = fs::OpenOptions::new().append(true).open(log).unwrap();
            // Paced (about 8 MB/s): it grows all through the run, not by gigabytes.
            while !stop.load(Ordering::Relaxed) {
                f.write_all(&[b'x'; 4096]).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        })
    };
    let out = sim
        .cmd(&[
            "--json",
            "backup",
            "create",
            "--kind",
            "system",
            "--source",
            src.to_str().unwrap(),
            "--output",
            "-",
        ])
        .stdout(fs::File::create(work.path().join("a.obx")).unwrap())
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    let json = err.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["changed_while_read"]["count"], 1, "{json}");
    assert_eq!(
        v["changed_while_read"]["first"][0],
        log.to_str().unwrap(),
        "{json}"
    );
    assert!(err.contains("offbox: warning: "), "{err}");

    // The confirmation line says it too.
    let sum = ChangedLine::of(&sim, &src, &log);
    assert!(
        sum.contains(&format!(" changed_while_read=1 ({})", log.display())),
        "{sum}"
    );
}

/// A second backup of a growing file, without --json: the confirmation line.
struct ChangedLine;

impl ChangedLine {
    fn of(sim: &common::Sim, src: &Path, log: &Path) -> String {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, log) = (stop.clone(), log.to_path_buf());
            std::thread::spawn(move || {
                let mut f = fs::OpenOptions::new().append(true).open(log).unwrap();
                // Paced (about 8 MB/s): it grows all through the run, not by gigabytes.
                while !stop.load(Ordering::Relaxed) {
                    f.write_all(&[b'y'; 4096]).unwrap();
                    std::thread::sleep(std::time::Duration::from_micros(500));
                }
            })
        };
        let err = sim.backup("system", src, &src.with_extension("obx"));
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        err
    }
}

/// GNU tar reads the PAX 1.0 sparse entries of `archive`'s payload, and restores the holes
/// of `names` in `src` as holes.
fn gnu_tar_restores_the_holes(sim: &common::Sim, archive: &Path, src: &Path, names: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let out = sim
        .cmd(&["decrypt", archive.to_str().unwrap(), "--output", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        out.stdout.len() < 2 << 20,
        "payload of {} bytes",
        out.stdout.len()
    );
    let payload = work.join("payload.tar");
    fs::write(&payload, &out.stdout).unwrap();
    let by_tar = work.join("by-tar");
    fs::create_dir(&by_tar).unwrap();
    let p = payload.to_str().unwrap();
    sh(work, "tar", &["-xf", p, "-C", by_tar.to_str().unwrap()]);
    let tar_back = by_tar.join(src.strip_prefix("/").unwrap());
    for &name in names {
        let (a, b) = (src.join(name), tar_back.join(name));
        let ((alloc_a, size_a), (alloc_b, size_b)) = (du(&a), du(&b));
        assert_eq!(size_a, size_b, "{name}: size differs after GNU tar");
        assert!(
            alloc_b <= alloc_a + 64,
            "{name}: GNU tar filled holes ({alloc_b} KiB)"
        );
        assert!(
            same_content(&a, &b),
            "{name}: content differs after GNU tar"
        );
    }
    let listing = sh(work, "tar", &["-tvf", p]);
    assert!(listing.contains(" 1073741824 "), "{listing}");
    assert!(!listing.contains("GNUSparseFile"), "{listing}");
}
