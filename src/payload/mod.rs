//! The plaintext payload of system and video archives: a tar stream of the sources,
//! compressed with zstd. Packing walks the sources without following symlinks; unpacking
//! extracts into a staging directory that is moved into place only after the whole archive
//! authenticated.

mod acl;
pub mod exclude;
mod extract;
mod fresh;
mod fsat;
mod make;
pub mod pack;
mod pax;
mod read_file;
mod sparse;
pub mod unpack;
pub mod videos;
mod write_file;
mod writers;
pub(crate) mod xattr;

/// Something a backup or restore wants the operator to know, without failing the run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// The path concerned.
    pub path: String,
    /// What happened: "vanished", "changed", "replaced", "unreadable", "skipped socket", ...
    pub what: String,
}

impl Notice {
    /// True for a file that changed while it was read (grew, shrank, failed, or had its
    /// mtime or size changed): its stored copy may not match any one moment.
    pub fn changed_while_read(&self) -> bool {
        read_file::CHANGED.iter().any(|p| self.what.starts_with(p))
    }
}

/// The files of a backup that changed while they were read: how many, and the first few.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangedFiles {
    /// How many files changed while being read.
    pub count: u64,
    /// The first few of them (at most [`ChangedFiles::SHOWN`]).
    pub first: Vec<String>,
}

impl ChangedFiles {
    /// How many names are kept.
    pub(crate) const SHOWN: usize = 5;

    /// The summary of `notices`.
    pub fn of(notices: &[Notice]) -> ChangedFiles {
        let mut out = ChangedFiles::default();
        for n in notices.iter().filter(|n| n.changed_while_read()) {
            out.count += 1;
            if out.first.len() < Self::SHOWN {
                out.first.push(n.path.clone());
            }
        }
        out
    }
}

impl std::fmt::Display for ChangedFiles {
    /// `N (a, b, c and M more)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}", self.count, self.first.join(", "))?;
        let more = self.count.saturating_sub(self.first.len() as u64);
        if more > 0 {
            write!(f, " and {more} more")?;
        }
        f.write_str(")")
    }
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// The output of a payload with a tail (an incremental video backup): the payload writes
/// its body, calls [`TailWrite::start_tail`], then writes the tail (the manifest), which a
/// reader can then find and read on its own (`crate::format::trailer`).
pub trait TailWrite: std::io::Write {
    /// Ends the body: what is written next is the tail. Called once.
    fn start_tail(&mut self) -> std::io::Result<()>;
}
