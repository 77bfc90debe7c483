//! The PKCS#11 user PIN, read through the one secret reader ([`crate::secret::source`]):
//! from a file or the environment, never from the command line, into a zeroizing value.
//! This module keeps the PIN-specific API; the reading, the size limit and the permission
//! warning live in `secret::source`.

use secrecy::SecretString;

use crate::secret::source::read_secret_text;
pub use crate::secret::source::{
    SecretError as PinError, SecretSource, MAX_SECRET_FILE, SERVICE_USER,
};
use crate::secret::SecretText;

/// Reads a PIN (the PKCS#11 user PIN) as the `secrecy` string the PKCS#11 login takes.
/// See [`read_secret_text`].
pub(crate) fn read_secret(
    source: &SecretSource,
    what: &'static str,
) -> Result<SecretString, PinError> {
    read_secret_text(source, what, "pin_file").map(SecretText::into_secret_string)
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
