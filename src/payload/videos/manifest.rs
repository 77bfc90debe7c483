//! The manifest of an incremental video archive: every recording present at that run, with
//! the archive that holds its bytes. It is the archive's tail (a tar entry named
//! [`MANIFEST_ENTRY`] after the recordings), so that it can be read without the recordings
//! (`crate::format::trailer`), and it is also the local catalogue's content.

use serde::{Deserialize, Serialize};

/// The tar entry that holds the manifest: the last entry of a video archive.
pub const MANIFEST_ENTRY: &str = ".offbox-manifest";

/// Version of the manifest encoding.
pub const MANIFEST_FORMAT: u16 = 1;

/// Largest manifest accepted when reading one (about 4 million recordings).
pub const MAX_MANIFEST_LEN: u64 = 1 << 30;

/// An archive a manifest refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRef {
    /// The archive id.
    pub id: [u8; 16],
    /// Its file name on the target.
    pub name: String,
}

/// One recording at one restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Path relative to `/`, as stored in the tar stream.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Status change time, seconds (change detection only).
    pub ctime: i64,
    /// Status change time, nanoseconds.
    pub ctime_nsec: u32,
    /// Device (change detection only).
    pub dev: u64,
    /// Inode (change detection only).
    pub ino: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// Index in [`Manifest::archives`] of the archive that holds the bytes.
    pub archive: u32,
}

impl Record {
    /// True when `other` (a fresh stat of the same path) shows no change: size, times,
    /// device and inode all equal, as restic decides.
    pub fn same_metadata(&self, other: &Record) -> bool {
        (
            self.size,
            self.mtime,
            self.mtime_nsec,
            self.ctime,
            self.ctime_nsec,
            self.dev,
            self.ino,
        ) == (
            other.size,
            other.mtime,
            other.mtime_nsec,
            other.ctime,
            other.ctime_nsec,
            other.dev,
            other.ino,
        )
    }
}

/// Every recording of one restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u16,
    /// The archive this manifest ends.
    pub archive_id: [u8; 16],
    /// The archives holding the recordings' bytes, this one included.
    pub archives: Vec<ArchiveRef>,
    /// The recordings, sorted by path, no duplicates.
    pub records: Vec<Record>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not decodable.
    #[error("the manifest cannot be decoded ({0})")]
    Decode(String),
    /// Decodable but inconsistent.
    #[error("the manifest is inconsistent: {0}")]
    Invalid(&'static str),
}

impl Manifest {
    /// The encoded manifest.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a manifest encodes")
    }

    /// The length of [`Manifest::encode`], without encoding into memory.
    pub fn encoded_len(&self) -> u64 {
        postcard::experimental::serialized_size(self).expect("a manifest encodes") as u64
    }

    /// Writes the encoding to `w` as it is produced.
    pub fn encode_to<W: std::io::Write>(&self, w: W) -> std::io::Result<()> {
        postcard::to_io(self, w)
            .map(|_| ())
            .map_err(|e| std::io::Error::other(format!("encoding the manifest: {e}")))
    }

    /// Decodes and checks a manifest: format, sorted unique paths, safe paths, archive
    /// indexes in range.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            postcard::from_bytes(bytes).map_err(|e| ManifestError::Decode(e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(ManifestError::Invalid("unknown manifest format"));
        }
        if m.records.windows(2).any(|w| w[0].path >= w[1].path) {
            return Err(ManifestError::Invalid("paths are not sorted and unique"));
        }
        if m.records
            .iter()
            .any(|r| r.archive as usize >= m.archives.len() || !safe_path(&r.path))
        {
            return Err(ManifestError::Invalid(
                "a record names an unknown archive or an unsafe path",
            ));
        }
        Ok(m)
    }

    /// The archive holding `r`'s bytes.
    pub fn archive_of(&self, r: &Record) -> &ArchiveRef {
        &self.archives[r.archive as usize]
    }
}

/// A relative path with no `.`, `..` or empty component, no NUL, not the manifest's own
/// name: the only paths a manifest may name.
pub fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && p != MANIFEST_ENTRY
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, archive: u32) -> Record {
        Record {
            path: path.into(),
            size: 1,
            mtime: 2,
            mtime_nsec: 3,
            ctime: 4,
            ctime_nsec: 5,
            dev: 6,
            ino: 7,
            mode: 0o640,
            uid: 0,
            gid: 0,
            sha256: [8; 32],
            archive,
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let m = Manifest {
            format: MANIFEST_FORMAT,
            archive_id: [1; 16],
            archives: vec![ArchiveRef {
                id: [1; 16],
                name: "a.obx".into(),
            }],
            records: vec![rec("var/a", 0), rec("var/b", 0)],
        };
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.encoded_len(), m.encode().len() as u64);
        let mut streamed = Vec::new();
        m.encode_to(&mut streamed).unwrap();
        assert_eq!(streamed, m.encode());
        let mut bad = m.clone();
        bad.records.swap(0, 1);
        assert!(Manifest::decode(&bad.encode()).is_err());
        let mut bad = m.clone();
        bad.records[1].archive = 1;
        assert!(Manifest::decode(&bad.encode()).is_err());
        let mut bad = m;
        bad.records[1].path = "var/../etc".into();
        assert!(Manifest::decode(&bad.encode()).is_err());
        assert!(!safe_path("/abs"));
        assert!(!safe_path("a//b"));
        assert!(safe_path("var/lib/rec/x.mp4"));
    }
}
