//! Errors of key custody. Each message says what failed and what the operator should do.

use thiserror::Error;

/// Why a data key could not be wrapped or unwrapped, or a key could not be managed.
#[derive(Debug, Error)]
pub enum KeyError {
    /// A PKCS#11 token problem.
    #[error(transparent)]
    Pkcs11(#[from] super::pkcs11::Pkcs11Error),
    /// A TPM problem.
    #[cfg(feature = "tpm")]
    #[error(transparent)]
    Tpm(#[from] super::tpm::TpmError),
    /// The backend was left out of this build.
    #[error("this offbox build has no {0} support (a rescue-kit build); use a full build (cargo feature {0}) for the device, or open archives with the recovery shares")]
    NotBuilt(&'static str),
    /// A recovery key or share problem.
    #[error(transparent)]
    Recovery(#[from] super::recovery::RecoveryError),
    /// A PIN or password could not be read.
    #[error(transparent)]
    Pin(#[from] super::pin::PinError),
    /// The config does not describe the backend.
    #[error("keys.backend = \"{0}\" has no usable [keys.{0}] table in the config; add it (see docs/operator-guide.md)")]
    BackendNotConfigured(&'static str),
    /// A device slot opened, but it is bound to another header: the header was changed, or
    /// the slot was copied from another archive.
    #[error("the {slot} slot does not belong to this archive's header: the header was modified after the archive was written, or the slot was copied from another archive (a forgery); do not trust this file, restore from another copy")]
    SlotMoved {
        /// "pkcs11" or "tpm".
        slot: &'static str,
    },
    /// The archive has no slot that any available custodian can open.
    #[error("no key slot of this archive can be opened here (slots: {slots}); {hint}")]
    NoUsableSlot {
        /// The slot kinds the archive has.
        slots: String,
        /// What to try instead.
        hint: &'static str,
    },
}

impl KeyError {
    /// For a failing HSM or TPM call: the function (or command) and its return code.
    pub fn call(&self) -> Option<(String, String)> {
        match self {
            KeyError::Pkcs11(e) => e.call(),
            #[cfg(feature = "tpm")]
            KeyError::Tpm(e) => e.call(),
            _ => None,
        }
    }
}
