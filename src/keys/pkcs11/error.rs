//! Errors of the PKCS#11 custodian. Every failing token call names the PKCS#11 function.

use thiserror::Error;

/// What went wrong with the PKCS#11 module, token or keys, and what to do about it.
#[derive(Debug, Error)]
pub enum Pkcs11Error {
    /// The module file could not be loaded.
    #[error("cannot load the PKCS#11 module {module}: {detail}; check keys.pkcs11.module in the config and that the HSM vendor's package is installed")]
    ModuleNotFound {
        /// The configured module path.
        module: String,
        /// The loader's message.
        detail: String,
    },
    /// No token with the configured label.
    #[error("no PKCS#11 token labelled \"{label}\" in module {module} (tokens present: {present}); check keys.pkcs11.token_label, that the HSM is connected, and for SoftHSM that SOFTHSM2_CONF points at its config")]
    TokenNotFound {
        /// The configured label.
        label: String,
        /// The module path.
        module: String,
        /// Labels of the tokens that are present.
        present: String,
    },
    /// C_Login refused the PIN.
    #[error("C_Login failed: CKR_PIN_INCORRECT: the PIN from {source_desc} is wrong for token \"{token}\"; fix the PIN there (repeated failures lock the token)")]
    WrongPin {
        /// Where the PIN came from.
        source_desc: String,
        /// The token label.
        token: String,
    },
    /// The user PIN is locked.
    #[error("C_Login failed: CKR_PIN_LOCKED: the user PIN of token \"{token}\" is locked after too many wrong PINs; the security officer must unlock or reset it")]
    PinLocked {
        /// The token label.
        token: String,
    },
    /// No key-encryption key yet.
    #[error("no key-encryption key labelled \"{label}\" in token \"{token}\"; run `offbox keys init` to create one")]
    KekMissing {
        /// The KEK label.
        label: String,
        /// The token label.
        token: String,
    },
    /// `keys init` found a KEK already.
    #[error("token \"{token}\" already holds key-encryption key \"{label}\" version {version}; archives depend on it. Use `offbox keys rotate` for a new version, or `offbox keys init --replace` only if you are sure no archive needs it")]
    KekExists {
        /// The KEK label.
        label: String,
        /// The token label.
        token: String,
        /// The newest version present.
        version: u32,
    },
    /// The archive needs a KEK version that the token does not hold.
    #[error("the archive's device slot needs key-encryption key \"{label}\" version {version}, which token \"{token}\" does not hold (it was retired, or the archive comes from another HSM); open the archive with the recovery shares")]
    VersionMissing {
        /// The KEK label.
        label: String,
        /// The version the slot names.
        version: u32,
        /// The token label.
        token: String,
    },
    /// Retiring the version in use is refused.
    #[error("key-encryption key version {version} is the current one, used by new archives; rotate first (`offbox keys rotate`), then retire it")]
    RetireCurrent {
        /// The version.
        version: u32,
    },
    /// The wrapped key did not unwrap: another key wrapped it, or it was altered.
    #[error("C_UnwrapKey failed: {rv}: the device slot does not open with this token's key-encryption key (the archive comes from another HSM, or its slot was altered); open it with the recovery shares")]
    UnwrapRefused {
        /// The PKCS#11 return value name.
        rv: String,
    },
    /// Any other failing call.
    #[error("{function} failed: {rv}; {hint}")]
    Call {
        /// The PKCS#11 function, e.g. "C_WrapKey".
        function: String,
        /// The return value name, e.g. "CKR_DEVICE_ERROR".
        rv: String,
        /// What to check.
        hint: &'static str,
    },
}

impl Pkcs11Error {
    /// For a failing token call: the PKCS#11 function and its return value, as data.
    pub fn call(&self) -> Option<(String, String)> {
        match self {
            Pkcs11Error::Call { function, rv, .. } => Some((function.clone(), rv.clone())),
            Pkcs11Error::UnwrapRefused { rv } => Some(("C_UnwrapKey".into(), rv.clone())),
            Pkcs11Error::WrongPin { .. } => Some(("C_Login".into(), "CKR_PIN_INCORRECT".into())),
            Pkcs11Error::PinLocked { .. } => Some(("C_Login".into(), "CKR_PIN_LOCKED".into())),
            _ => None,
        }
    }
}

/// `CKR_PIN_INCORRECT` from cryptoki's `PinIncorrect`.
pub fn rv_name(rv: &cryptoki::error::RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Turns a cryptoki error into a [`Pkcs11Error::Call`] with a hint.
pub(crate) fn call_error(e: cryptoki::error::Error, hint: &'static str) -> Pkcs11Error {
    match e {
        cryptoki::error::Error::Pkcs11(rv, function) => Pkcs11Error::Call {
            function: format!("C_{function:?}"),
            rv: rv_name(&rv),
            hint,
        },
        other => Pkcs11Error::Call {
            function: "PKCS#11 call".into(),
            rv: other.to_string(),
            hint,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::error::RvError;

    #[test]
    fn rv_names_are_spec_spelling() {
        assert_eq!(rv_name(&RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            rv_name(&RvError::WrappedKeyInvalid),
            "CKR_WRAPPED_KEY_INVALID"
        );
    }
}
