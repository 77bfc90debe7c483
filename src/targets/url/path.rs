//! `file:///path`: a directory mounted by other means.

use std::fmt;

use super::{invalid, percent_decode};
use crate::targets::TargetError;

/// A `file://` target: a directory on a network filesystem mounted by other means (NFS,
/// CIFS, sshfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathUrl {
    /// Absolute path.
    pub path: String,
}

impl PathUrl {
    /// Parses what follows `file://`.
    pub(super) fn parse(url: &str, rest: &str) -> Result<PathUrl, TargetError> {
        if !rest.starts_with('/') {
            return Err(invalid(url, "write file:///absolute/path (three slashes)"));
        }
        Ok(PathUrl {
            path: percent_decode(url, rest)?,
        })
    }
}

impl fmt::Display for PathUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file://{}", self.path)
    }
}
