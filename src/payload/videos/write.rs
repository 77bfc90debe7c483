//! Writing a video archive's payload: the tar entries of the recordings the plan sends, then
//! the tail: the manifest of the new restore point.
//!
//! A recording is read through a descriptor opened without following symlinks, whose device,
//! inode, size, mtime and ctime must be the walk's; its content is hashed as it is stored. One
//! that vanishes, is replaced or changed after the walk, or shrinks, grows or changes while it
//! is read gets a notice and is left out of
//! the manifest (the point keeps its previous version, if any), so no restore ever yields a
//! half-written recording, and the next run sends it again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use tar::{Builder, EntryType, Header};

use super::hash::Hashing;
use super::manifest::{ArchiveRef, Manifest, Record, MANIFEST_ENTRY, MANIFEST_FORMAT};
use super::plan::{Action, Plan};
use super::scan::record_of;
use crate::payload::{Notice, TailWrite};
use crate::progress::Meter;

/// What a written payload holds.
#[derive(Debug)]
pub struct Written {
    /// The new point's manifest, as stored in the tail.
    pub manifest: Manifest,
    /// Recordings stored in this archive.
    pub stored: u64,
    /// Their bytes.
    pub stored_bytes: u64,
    /// What the operator should know.
    pub notices: Vec<Notice>,
}

/// Writes the recordings `plan` sends and the manifest to `out`; `this` is the archive
/// being written.
pub fn write(
    plan: Plan,
    this: ArchiveRef,
    out: &mut dyn TailWrite,
    meter: &Meter,
) -> io::Result<Written> {
    let Plan {
        mut records,
        mut actions,
        mut previous,
        mut archives,
        mut notices,
        ..
    } = plan;
    let archive_id = this.id;
    archives.push(this);
    let own = (archives.len() - 1) as u32;
    let mut b = Builder::new(out);
    let (mut stored, mut stored_bytes) = (0, 0);
    for (i, action) in actions.iter_mut().enumerate() {
        if *action != Action::Send {
            continue;
        }
        match store(&mut b, &records[i], meter)? {
            Ok(mut r) => {
                stored += 1;
                stored_bytes += r.size;
                r.archive = own;
                records[i] = r;
            }
            Err(what) => {
                let prev = previous.remove(&i);
                notices.push(Notice {
                    path: format!("/{}", records[i].path),
                    what: format!(
                        "{what}; not part of this point{}; the next run sends it",
                        if prev.is_some() {
                            " (its previous version is)"
                        } else {
                            ""
                        }
                    ),
                });
                match prev {
                    Some(r) => records[i] = r,
                    None => *action = Action::Skip,
                }
            }
        }
    }
    // The manifest's records are the plan's, in place, without the skipped ones.
    let mut keep = actions.iter().map(|a| *a != Action::Skip);
    records.retain(|_| keep.next().unwrap_or(false));
    drop(actions);
    b.get_mut().start_tail()?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        archive_id,
        archives,
        records,
    };
    // Encoded straight into the tar entry: with 100,000 recordings a copy of the encoding
    // would be a fifth of the run's memory.
    let len = manifest.encoded_len();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(len);
    h.set_mtime(0);
    h.set_path(MANIFEST_ENTRY)?;
    h.set_cksum();
    let out = b.get_mut();
    out.write_all(h.as_bytes())?;
    manifest.encode_to(&mut *out)?;
    let pad = (512 - len % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize])?;
    b.into_inner()?;
    Ok(Written {
        manifest,
        stored,
        stored_bytes,
        notices,
    })
}

/// Stores one recording. The outer error fails the archive (the output failed); the inner
/// one says why this recording was not stored whole.
fn store<W: io::Write>(
    b: &mut Builder<W>,
    now: &Record,
    meter: &Meter,
) -> io::Result<Result<Record, String>> {
    let abs = format!("/{}", now.path);
    let file = match open(&abs) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err("vanished".into())),
        Err(e) => return Ok(Err(format!("cannot be read ({e})"))),
    };
    let before = file.metadata()?;
    if !same_as_scanned(&before, now) {
        return Ok(Err("replaced or changed since it was scanned".into()));
    }
    let size = before.len();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(before.mode() & 0o7777);
    h.set_uid(before.uid().into());
    h.set_gid(before.gid().into());
    h.set_mtime(before.mtime().max(0) as u64);
    h.set_size(size);
    let mut reader = Exact {
        inner: Hashing::new(&file),
        left: size,
        short: false,
        failed: None,
        meter,
    };
    b.append_data(
        &mut h,
        &now.path,
        BufReader::with_capacity(1 << 20, &mut reader),
    )?;
    if let Some(e) = reader.failed {
        return Ok(Err(format!("read failed ({e})")));
    }
    if reader.short {
        return Ok(Err("shrank while being read".into()));
    }
    let after = file.metadata()?;
    if after.len() != size
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec()
    {
        return Ok(Err("changed while being read".into()));
    }
    let mut r = record_of(now.path.clone(), &before);
    r.sha256 = reader.inner.finish();
    Ok(Ok(r))
}

/// Whether the opened file is the one the walk saw, unchanged. Device and inode alone do
/// not say it: a file system reuses a freed inode number at once, so a recording deleted and
/// replaced between the walk and this read can come back with the same number. Size, mtime
/// and ctime (set anew on every write, rename or inode reuse) must match too.
fn same_as_scanned(m: &std::fs::Metadata, now: &Record) -> bool {
    m.is_file()
        && m.dev() == now.dev
        && m.ino() == now.ino
        && m.len() == now.size
        && m.mtime() == now.mtime
        && m.mtime_nsec() == i64::from(now.mtime_nsec)
        && m.ctime() == now.ctime
        && m.ctime_nsec() == i64::from(now.ctime_nsec)
}

fn open(path: &str) -> io::Result<File> {
    let flags = libc_flags();
    OpenOptions::new()
        .read(true)
        .custom_flags(flags | nix::fcntl::OFlag::O_NOATIME.bits())
        .open(path)
        .or_else(|e| {
            // O_NOATIME needs ownership or CAP_FOWNER.
            if e.raw_os_error() == Some(nix::libc::EPERM) {
                OpenOptions::new().read(true).custom_flags(flags).open(path)
            } else {
                Err(e)
            }
        })
}

fn libc_flags() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC).bits()
}

/// Exactly `left` bytes of a file: padded with zeros when it shrank (and said), never
/// more when it grew.
struct Exact<'a, R> {
    inner: Hashing<R>,
    left: u64,
    short: bool,
    failed: Option<io::Error>,
    meter: &'a Meter,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = if self.short || self.failed.is_some() {
            0
        } else {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) => {
                    self.failed = Some(e);
                    0
                }
            }
        };
        let n = if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        self.meter.add_in(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::exclude::Excludes;
    use crate::payload::videos::plan::plan;
    use crate::payload::videos::scan::scan;

    /// An in-memory output that records where the tail starts.
    #[derive(Default)]
    struct Buf {
        bytes: Vec<u8>,
        tail: Option<usize>,
    }

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.bytes.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl TailWrite for Buf {
        fn start_tail(&mut self) -> io::Result<()> {
            self.tail = Some(self.bytes.len());
            Ok(())
        }
    }

    fn this() -> ArchiveRef {
        ArchiveRef {
            id: [9; 16],
            name: "this.obx".into(),
        }
    }

    #[test]
    fn vanished_and_replaced_files_are_left_out_and_the_tail_is_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rec");
        std::fs::create_dir_all(&root).unwrap();
        for n in ["keep", "vanish", "replace", "swap", "grow"] {
            std::fs::write(root.join(n), n.repeat(1000)).unwrap();
        }
        let s = scan(std::slice::from_ref(&root), &Excludes::new(&[])).unwrap();
        let p = plan(s, None, &|_| true, i64::MAX, false);
        std::fs::remove_file(root.join("vanish")).unwrap();
        // Deleted, then a new file renamed over the name: the file system may give the new
        // file the freed inode number, which must not make it pass for the scanned one.
        std::fs::remove_file(root.join("replace")).unwrap();
        std::fs::write(root.join("replace-tmp"), b"other").unwrap();
        std::fs::rename(root.join("replace-tmp"), root.join("replace")).unwrap();
        // The old file kept alive elsewhere: the new one surely has another inode.
        std::fs::rename(root.join("swap"), dir.path().join("old-swap")).unwrap();
        std::fs::write(root.join("swap"), "swap".repeat(1000)).unwrap();
        // Same inode, written to after the scan.
        let mut g = OpenOptions::new()
            .append(true)
            .open(root.join("grow"))
            .unwrap();
        g.write_all(b"more").unwrap();
        drop(g);
        let mut out = Buf::default();
        let w = write(p, this(), &mut out, &Meter::default()).unwrap();
        let names: Vec<&str> = w
            .manifest
            .records
            .iter()
            .map(|r| r.path.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["keep"]);
        assert_eq!(w.stored, 1);
        let what: Vec<String> = w.notices.iter().map(|n| n.what.clone()).collect();
        assert_eq!(
            what,
            [
                "replaced or changed since it was scanned; not part of this point; the next run sends it",
                "replaced or changed since it was scanned; not part of this point; the next run sends it",
                "replaced or changed since it was scanned; not part of this point; the next run sends it",
                "vanished; not part of this point; the next run sends it"
            ]
        );
        let paths: Vec<&str> = w
            .notices
            .iter()
            .map(|n| n.path.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(paths, ["grow", "replace", "swap", "vanish"]);
        let keep = &w.manifest.records[0];
        assert_eq!(keep.size, 4000);
        assert_eq!(
            keep.sha256,
            <[u8; 32]>::try_from(
                aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    "keep".repeat(1000).as_bytes()
                )
                .as_ref()
            )
            .unwrap()
        );
        assert_eq!(w.manifest.archives, vec![this()]);
        // The tail starts with the manifest's tar entry and decodes on its own.
        let tail = &out.bytes[out.tail.unwrap()..];
        let mut ar = tar::Archive::new(tail);
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some(MANIFEST_ENTRY));
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        assert_eq!(Manifest::decode(&b).unwrap(), w.manifest);
    }

    #[test]
    fn a_file_that_shrinks_while_read_is_padded_and_flagged() {
        let meter = Meter::default();
        let mut r = Exact {
            inner: Hashing::new(&b"abc"[..]),
            left: 5,
            short: false,
            failed: None,
            meter: &meter,
        };
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc\0\0");
        assert!(r.short);
    }
}
