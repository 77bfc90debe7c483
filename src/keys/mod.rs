//! Key custody: who can wrap and unwrap an archive's data key.
//!
//! One trait, [`KeyCustodian`], with three implementations: a PKCS#11 token ([`pkcs11`]),
//! a TPM 2.0 ([`tpm`]) and the offline recovery key ([`recovery`]). Hardware custodians also
//! implement [`Device`] for their lifecycle (init, status). An archive carries one slot per
//! custodian; any one of them opens it.

pub mod error;
pub mod pin;
pub mod pkcs11;
pub mod recovery;
#[cfg(feature = "tpm")]
pub mod tpm;

pub use error::KeyError;

use crate::config::{Backend, Config};

use crate::format::{ArchiveKind, KeySlot};
use crate::secret::Dek;

/// The archive a slot belongs to. Custodians that can authenticate associated data bind the
/// wrapped key to it, so a slot cannot be moved to another archive.
pub struct SlotContext<'a> {
    /// The archive's random id.
    pub archive_id: &'a [u8; 16],
    /// The archive's key-schedule salt.
    pub salt: &'a [u8; 32],
    /// The archive's kind.
    pub kind: ArchiveKind,
}

impl SlotContext<'_> {
    /// The context as bytes: `archive_id || salt || kind name`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(self.archive_id);
        v.extend_from_slice(self.salt);
        v.extend_from_slice(self.kind.name().as_bytes());
        v
    }
}

/// Wraps data keys into slots and unwraps them again.
pub trait KeyCustodian {
    /// A short name for reports and errors: "pkcs11", "tpm" or "recovery".
    fn name(&self) -> &'static str;

    /// Wraps `dek` for the archive described by `ctx`.
    fn wrap(&mut self, dek: &Dek, ctx: &SlotContext<'_>) -> Result<KeySlot, KeyError>;

    /// Unwraps `slot`. `Ok(None)` means the slot is not of this custodian's kind; an error
    /// means it is, and could not be opened (the error says why and what to do).
    fn unwrap(&mut self, slot: &KeySlot, ctx: &SlotContext<'_>) -> Result<Option<Dek>, KeyError>;
}

/// One key version held by a hardware custodian.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyVersion {
    /// offbox's version number.
    pub version: u32,
    /// Where the key lives (token label and object id, TPM handle, ...).
    pub location: String,
    /// True for the version new archives use.
    pub current: bool,
}

/// What `offbox keys status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceStatus {
    /// "pkcs11" or "tpm".
    pub backend: &'static str,
    /// The module path or TCTI.
    pub module: String,
    /// The token or TPM description.
    pub device: String,
    /// The key-encryption key versions found, oldest first; empty when none exists yet.
    pub versions: Vec<KeyVersion>,
}

/// Lifecycle and signing operations of a hardware custodian (HSM or TPM).
pub trait Device: KeyCustodian {
    /// Creates the first key-encryption key and the signing key pair. Refuses to replace an
    /// existing KEK unless `replace` is true.
    fn init(&mut self, replace: bool) -> Result<KeyVersion, KeyError>;

    /// Reports the device and its key versions.
    fn status(&mut self) -> Result<DeviceStatus, KeyError>;

    /// Creates the next KEK version; new archives use it. Old versions stay.
    fn rotate(&mut self) -> Result<KeyVersion, KeyError>;

    /// Destroys an old KEK version. Refuses the current one.
    fn retire(&mut self, version: u32) -> Result<(), KeyError>;

    /// The archive signing key's public half.
    fn signing_key(&mut self) -> Result<crate::format::signature::PublicKey, KeyError>;

    /// Signs a SHA-256 digest with the hardware-held signing key: raw `r || s`.
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<[u8; 64], KeyError>;
}

/// Opens the hardware custodian the config names.
pub fn open_device(cfg: &Config) -> Result<Box<dyn Device>, KeyError> {
    match cfg.keys.backend {
        Backend::Pkcs11 => {
            let p = cfg
                .keys
                .pkcs11
                .as_ref()
                .ok_or(KeyError::BackendNotConfigured("pkcs11"))?;
            Ok(Box::new(pkcs11::Pkcs11Custodian::open(p)?))
        }
        #[cfg(not(feature = "tpm"))]
        Backend::Tpm => Err(KeyError::NotBuilt("tpm")),
        #[cfg(feature = "tpm")]
        Backend::Tpm => {
            let t = cfg
                .keys
                .tpm
                .as_ref()
                .ok_or(KeyError::BackendNotConfigured("tpm"))?;
            Ok(Box::new(tpm::TpmCustodian::open(t)?))
        }
    }
}
