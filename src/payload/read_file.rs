//! Reading one regular file into its tar entry: exactly the bytes the header announced, and
//! what happened to the file while it was read.
//!
//! The header is written before the data, so the data must have the announced length
//! whatever the file does meanwhile: a file that shrinks or fails is padded with zeros, one
//! that grows is cut at the announced size. Each of these, and a file whose mtime or size
//! changed during the read, becomes a [`Notice`].

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::sparse::Extent;
use super::Notice;

/// The beginnings of the notices about files that changed while they were read (see
/// [`Notice::changed_while_read`]).
pub(crate) const CHANGED: [&str; 4] = [
    "changed while being read",
    "grew while being read",
    "shrank by ",
    "read error after ",
];

/// Yields the bytes of `extents` of a file (all of it, for a file without holes), exactly
/// `remaining` of them: the file's bytes, then zeros if the file came up short.
pub(crate) struct ExactSize {
    inner: File,
    extents: Vec<Extent>,
    /// The extent being read, and what is left of it.
    index: usize,
    left: u64,
    remaining: u64,
    short: u64,
    failed: Option<io::Error>,
}

impl ExactSize {
    /// Reads `extents` of `file` (each `(offset, length)`, in order).
    pub(crate) fn new(file: File, extents: Vec<Extent>) -> ExactSize {
        let remaining = extents.iter().map(|e| e.1).sum();
        ExactSize {
            inner: file,
            extents,
            index: 0,
            left: 0,
            remaining,
            short: 0,
            failed: None,
        }
    }

    /// Moves to the next extent with data when the current one is done.
    fn next_extent(&mut self) -> io::Result<()> {
        while self.left == 0 && self.index < self.extents.len() {
            let (off, len) = self.extents[self.index];
            self.index += 1;
            if len > 0 {
                // Always: finding the holes moved the descriptor's offset.
                self.inner.seek(SeekFrom::Start(off))?;
                self.left = len;
            }
        }
        Ok(())
    }
}

impl Read for ExactSize {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if self.failed.is_none() && self.short == 0 {
            if let Err(e) = self.next_extent() {
                self.failed = Some(e);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = if self.failed.is_some() || self.short > 0 {
            0
        } else {
            let want = want.min(usize::try_from(self.left).unwrap_or(usize::MAX));
            loop {
                match self.inner.read(&mut buf[..want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.failed = Some(e);
                        break 0;
                    }
                }
            }
        };
        if n == 0 {
            // Pad: the header already promised `remaining` more bytes.
            self.short = self.short.max(self.remaining);
            buf[..want].fill(0);
            self.remaining -= want as u64;
            return Ok(want);
        }
        self.left -= n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Records what happened to a file while it was read: an error, shrinking, growth, change.
/// `size` is the size announced in the header.
pub(crate) fn after_read(
    notices: &mut Vec<Notice>,
    path: &Path,
    meta: &Metadata,
    mut exact: ExactSize,
    size: u64,
) {
    let stored = exact.extents.iter().map(|e| e.1).sum::<u64>();
    let mut note = |what: String| {
        notices.push(Notice {
            path: path.display().to_string(),
            what,
        })
    };
    if let Some(e) = exact.failed.take() {
        note(format!(
            "{}{} bytes ({e}); stored padded with zeros",
            CHANGED[3],
            stored - exact.short
        ));
    } else if exact.short > 0 {
        note(format!(
            "{}{} bytes while being read; stored padded with zeros",
            CHANGED[2], exact.short
        ));
    } else {
        let mut probe = [0u8; 1];
        let grew = exact.inner.seek(SeekFrom::Start(size)).is_ok()
            && matches!(exact.inner.read(&mut probe), Ok(1));
        if grew {
            note(format!("{}; stored its first {size} bytes", CHANGED[1]));
        } else if let Ok(now) = fs::symlink_metadata(path) {
            if now.mtime() != meta.mtime()
                || now.mtime_nsec() != meta.mtime_nsec()
                || now.len() != size
            {
                note(format!(
                    "{}; the stored copy may mix old and new content",
                    CHANGED[0]
                ));
            }
        } else {
            note("vanished while being read; stored as read".into());
        }
    }
}
