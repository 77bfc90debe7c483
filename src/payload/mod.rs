//! The plaintext payload of system and video archives: a tar stream of the sources,
//! compressed with zstd. Packing walks the sources without following symlinks; unpacking
//! extracts into a staging directory that is moved into place only after the whole archive
//! authenticated.

pub mod exclude;
mod extract;
mod fsat;
pub mod pack;
pub mod unpack;

/// Something a backup or restore wants the operator to know, without failing the run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// The path concerned.
    pub path: String,
    /// What happened: "vanished", "changed", "replaced", "unreadable", "skipped socket", ...
    pub what: String,
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}
