//! Reading PINs and passwords from files or the environment, never from the command line.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use thiserror::Error;

/// Where a secret comes from: a file (first line, trailing newline removed) or an
/// environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file whose content is the secret.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// Why a secret could not be read.
#[derive(Debug, Error)]
pub enum PinError {
    /// The file could not be read.
    #[error("cannot read the {what} from {path}: {err}; check the path in the config and that the service user may read it")]
    File {
        /// What the secret is for ("PKCS#11 PIN", ...).
        what: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        err: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("the {what} is expected in environment variable {var}, which is not set; set it, or configure a pin_file")]
    EnvMissing {
        /// What the secret is for.
        what: &'static str,
        /// The variable name.
        var: String,
    },
    /// The secret is empty.
    #[error("the {what} from {source_desc} is empty; write the secret there")]
    Empty {
        /// What the secret is for.
        what: &'static str,
        /// Where it came from.
        source_desc: String,
    },
}

/// Reads a secret. One trailing "\n" or "\r\n" is removed from file contents.
pub fn read_secret(source: &SecretSource, what: &'static str) -> Result<SecretString, PinError> {
    let value = match source {
        SecretSource::File(path) => read_file(path, what)?,
        SecretSource::Env(var) => std::env::var(var).map_err(|_| PinError::EnvMissing {
            what,
            var: var.clone(),
        })?,
    };
    if value.is_empty() {
        return Err(PinError::Empty {
            what,
            source_desc: source.to_string(),
        });
    }
    Ok(SecretString::from(value))
}

fn read_file(path: &Path, what: &'static str) -> Result<String, PinError> {
    let mut s = std::fs::read_to_string(path).map_err(|err| PinError::File {
        what,
        path: path.display().to_string(),
        err,
    })?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn file_secret_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "12 34\\&!\n").unwrap();
        let s = read_secret(&SecretSource::File(p), "PIN").unwrap();
        assert_eq!(s.expose_secret(), "12 34\\&!");
    }

    #[test]
    fn missing_env_names_the_variable() {
        let e = read_secret(
            &SecretSource::Env("OFFBOX_TEST_UNSET_VAR".into()),
            "PKCS#11 PIN",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the PKCS#11 PIN is expected in environment variable OFFBOX_TEST_UNSET_VAR, which is not set; set it, or configure a pin_file"
        );
    }
}
