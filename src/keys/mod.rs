//! Key custody: who can wrap and unwrap an archive's data key.
//!
//! The key joint has two sides, as age's `Recipient` and `Identity`: a [`SlotRecipient`]
//! wraps a data key into a slot, a [`SlotIdentity`] unwraps a slot again. A PKCS#11 token
//! ([`pkcs11`]) and a TPM 2.0 ([`tpm`]) are both, and also implement [`Device`] for their
//! lifecycle (init, status) and signing. The offline recovery key ([`recovery`]) is split by
//! what is at hand: its public key is a recipient only, and the private key rebuilt from the
//! custodians' shares an identity only. An archive carries one slot per recipient; any one
//! identity of a matching kind opens it. [`open_device`] takes the `[keys]` section of the
//! config ([`KeysConfig`]).

pub mod config;
pub mod error;
pub mod pin;
pub mod pkcs11;
pub mod recovery;
#[cfg(feature = "tpm")]
pub mod tpm;

pub use config::{Backend, KeysConfig};
pub use error::KeyError;

use crate::format::{ArchiveKind, Header, KeySlot};
use crate::secret::{Dek, Key32};

/// The archive a slot belongs to. Every custodian binds the wrapped key to it, so that a slot
/// copied into another archive does not open (format version 2; version-1 device slots are
/// unbound, and such archives are trusted only through their signature).
pub struct SlotContext<'a> {
    /// The archive's random id.
    pub archive_id: &'a [u8; 16],
    /// The archive's key-schedule salt.
    pub salt: &'a [u8; 32],
    /// The archive's kind.
    pub kind: ArchiveKind,
    /// [`Header::slot_binding`]: a digest of every header field but the slots (version 2).
    pub binding: Option<[u8; 32]>,
}

impl<'a> SlotContext<'a> {
    /// The context of `header`'s slots.
    pub fn of(header: &'a Header) -> Self {
        SlotContext {
            archive_id: &header.archive_id,
            salt: &header.salt,
            kind: header.kind,
            binding: header.slot_binding(),
        }
    }

    /// The context as bytes: the binding (version 2), else `archive_id || salt || kind name`.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        if let Some(b) = self.binding {
            return b.to_vec();
        }
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(self.archive_id);
        v.extend_from_slice(self.salt);
        v.extend_from_slice(self.kind.name().as_bytes());
        v
    }
}

/// The bytes a device custodian wraps or seals: the DEK, then (version 2) the binding.
pub(crate) fn bound_key(dek: &Dek, ctx: &SlotContext<'_>) -> zeroize::Zeroizing<Vec<u8>> {
    let mut v = zeroize::Zeroizing::new(Vec::with_capacity(64));
    v.extend_from_slice(dek.expose());
    if let Some(b) = ctx.binding {
        v.extend_from_slice(&b);
    }
    v
}

/// Splits what a device custodian unwrapped back into the DEK, checking the binding in
/// constant time. `Err(true)` when the slot belongs to another header (a moved slot, or one
/// of the other format version), `Err(false)` when the length is not a DEK's at all.
pub(crate) fn unbind_key(plain: &[u8], ctx: &SlotContext<'_>) -> Result<Dek, bool> {
    let want = 32 + ctx.binding.map_or(0, |_| 32);
    if plain.len() != want {
        // A slot of the other format version: it was moved (a downgrade to version 1 keeps
        // a version-2 slot's 64 bytes), not damaged.
        return Err(plain.len() == 32 || plain.len() == 64);
    }
    if let Some(b) = ctx.binding {
        aws_lc_rs::constant_time::verify_slices_are_equal(&plain[32..], &b).map_err(|_| true)?;
    }
    Key32::from_slice(&plain[..32]).ok_or(false)
}

/// Either side of the key joint: names the kind of slot it makes or opens.
pub trait Custodian {
    /// A short name for reports and errors: "pkcs11", "tpm" or "recovery".
    fn name(&self) -> &'static str;
}

/// The wrap side of the key joint (age's `Recipient`): makes a slot that holds a data key.
pub trait SlotRecipient: Custodian {
    /// Wraps `dek` for the archive described by `ctx`.
    fn wrap(&mut self, dek: &Dek, ctx: &SlotContext<'_>) -> Result<KeySlot, KeyError>;
}

/// The unwrap side of the key joint (age's `Identity`): opens the slots of its kind.
pub trait SlotIdentity: Custodian {
    /// Unwraps `slot`. `Ok(None)` means the slot is not of this identity's kind; an error
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

/// A hardware custodian (HSM or TPM): both sides of the key joint, its lifecycle, and
/// signing.
pub trait Device: SlotRecipient + SlotIdentity {
    /// Creates a key-encryption key and the signing key pair. Refuses to replace an existing
    /// KEK unless `replace` is true; then every KEK version is destroyed and the new one takes
    /// a version number never used before.
    fn init(&mut self, replace: bool) -> Result<KeyVersion, KeyError>;

    /// Reports the device and its key versions.
    fn status(&mut self) -> Result<DeviceStatus, KeyError>;

    /// Creates the next KEK version; new archives use it. Old versions stay.
    fn rotate(&mut self) -> Result<KeyVersion, KeyError>;

    /// Destroys an old KEK version. Refuses the current one.
    fn retire(&mut self, version: u32) -> Result<(), KeyError>;

    /// The archive signing key's public half: the key new archives are signed with.
    fn signing_key(&mut self) -> Result<crate::format::signature::PublicKey, KeyError>;

    /// Every signing public key this device holds, current first: the keys whose archives
    /// this appliance trusts as its own.
    fn signing_keys(&mut self) -> Result<Vec<crate::format::signature::PublicKey>, KeyError> {
        Ok(vec![self.signing_key()?])
    }

    /// Signs a SHA-256 digest with the hardware-held signing key: raw `r || s`.
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<[u8; 64], KeyError>;
}

/// Opens the hardware custodian the `[keys]` section names.
pub fn open_device(keys: &KeysConfig) -> Result<Box<dyn Device>, KeyError> {
    match keys.backend {
        Backend::Pkcs11 => {
            let p = keys
                .pkcs11
                .as_ref()
                .ok_or(KeyError::BackendNotConfigured("pkcs11"))?;
            Ok(Box::new(pkcs11::Pkcs11Custodian::open(p)?))
        }
        #[cfg(not(feature = "tpm"))]
        Backend::Tpm => Err(KeyError::NotBuilt("tpm")),
        #[cfg(feature = "tpm")]
        Backend::Tpm => {
            let t = keys
                .tpm
                .as_ref()
                .ok_or(KeyError::BackendNotConfigured("tpm"))?;
            Ok(Box::new(tpm::TpmCustodian::open(t)?))
        }
    }
}
