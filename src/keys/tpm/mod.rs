//! The TPM 2.0 custodian: data keys sealed under a storage key that never leaves the TPM.
//!
//! Keys live under the Owner hierarchy (empty owner auth) as persistent objects, so "which
//! versions exist" is kept in the TPM, not in a file:
//!
//! | persistent handle           | object                                                    |
//! |-----------------------------|-----------------------------------------------------------|
//! | `0x810F_F000 + N`, N=1..255 | key-encryption key version N: ECC P-256 restricted-decrypt |
//! |                             | storage primary, `unique.x = SHA-256("offbox kek vN")`    |
//! | `0x810F_F100`               | archive signing key: ECC P-256 ECDSA-SHA256 primary,      |
//! |                             | `unique.x = SHA-256("offbox archive signing v1")`         |
//!
//! Primaries derive from the owner seed and their template: version N can be re-created at
//! any time on the same TPM (until `tpm2_clear` changes the seed) and is a different key on
//! every other TPM. The current version is the highest present. Retiring evicts the handle;
//! that is a policy barrier, not crypto-shredding (only a new owner seed destroys a version).
//!
//! A data key is sealed as a KeyedHash object under the current version through a salted HMAC
//! session with AES-128-CFB parameter encryption (salt key: that version's primary), so the DEK
//! never crosses the bus in clear. With `pcrs` configured the object has `userWithAuth` clear
//! and an authPolicy of TPM2_PolicyPCR over the SHA-256 bank, and unsealing goes through a
//! salted policy session. Every transient object and session is flushed here, on error paths
//! too. Files: `error.rs` (errors, response codes), `objects.rs` (templates and byte formats).

mod error;
mod lifecycle;
mod objects;
mod seal;

pub use error::TpmError;

use std::collections::HashMap;
use std::str::FromStr;

use serde::Deserialize;
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind as Rc;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::constants::{CapabilityType, SessionType};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, SessionHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, Digest, HashcheckTicket, Public, Signature, SignatureScheme,
    SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, Error as TssError, WrapperErrorKind};

use crate::format::KeySlot;
use crate::keys::{
    Custodian, Device, DeviceStatus, KeyError, KeyVersion, SlotContext, SlotIdentity, SlotRecipient,
};
use crate::secret::Dek;
use error::{kind_of, rc_text};

/// Key-encryption key version N lives at persistent handle `KEK_HANDLE_BASE + N`.
pub(crate) const KEK_HANDLE_BASE: u32 = 0x810F_F000;
/// Highest key-encryption key version (handles up to `0x810F_F0FF`).
pub(crate) const MAX_VERSION: u32 = 0xFF;
/// Persistent handle of the archive signing key.
pub(crate) const SIGNING_HANDLE: u32 = 0x810F_F100;
/// One TPM2_PCR_Read returns at most 8 digests.
const MAX_PCRS: usize = 8;

/// The `[keys.tpm]` table of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    /// TCTI string: `device:/dev/tpmrm0`, `tabrmd`, or `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// PCR indexes (SHA-256 bank, 0..=23, at most 8) new slots are bound to; empty: unbound.
    #[serde(default)]
    pub pcrs: Vec<u8>,
}

/// A connection to the configured TPM. Holds no key material.
pub struct TpmCustodian {
    ctx: Context,
    tcti: String,
    pcrs: Vec<u8>,
    /// ESYS handles and Names of the persistent keys looked up so far.
    keys: HashMap<u32, (KeyHandle, Vec<u8>)>,
    commands: u64,
}

impl TpmCustodian {
    /// Parses the TCTI and PCR list and connects. Sends no TPM command.
    pub fn open(cfg: &TpmConfig) -> Result<Self, TpmError> {
        let conf = TctiNameConf::from_str(&cfg.tcti).map_err(|_| TpmError::Config {
            what: format!(
                "tcti \"{}\" is not a TCTI string (use device:/dev/tpmrm0, tabrmd, or swtpm:host=127.0.0.1,port=2321)",
                cfg.tcti
            ),
        })?;
        let mut pcrs = cfg.pcrs.clone();
        pcrs.sort_unstable();
        pcrs.dedup();
        if pcrs.iter().any(|&p| p > 23) || pcrs.len() > MAX_PCRS {
            return Err(TpmError::Config {
                what: format!(
                    "pcrs {:?}: give at most {MAX_PCRS} PCR indexes from 0 to 23",
                    cfg.pcrs
                ),
            });
        }
        let ctx = Context::new(conf).map_err(|e| TpmError::Unreachable {
            tcti: cfg.tcti.clone(),
            detail: rc_text(e),
        })?;
        Ok(TpmCustodian {
            ctx,
            tcti: cfg.tcti.clone(),
            pcrs,
            keys: HashMap::new(),
            commands: 0,
        })
    }

    /// Number of TPM commands sent so far (for measurements).
    pub fn commands_sent(&self) -> u64 {
        self.commands
    }

    /// The persistent handle of key version `version`.
    pub(crate) fn kek_handle(version: u32) -> u32 {
        KEK_HANDLE_BASE + version
    }

    /// The signing key's public key as a DER SubjectPublicKeyInfo (id-ecPublicKey, P-256).
    pub fn signing_public_key_spki_der(&mut self) -> Result<Vec<u8>, TpmError> {
        let key = self.signing_key()?;
        let (public, _, _) = self
            .cmd(None, |c| c.read_public(key))
            .map_err(|e| self.err("TPM2_ReadPublic", e))?;
        match public {
            Public::Ecc { unique, .. } => {
                objects::p256_spki_der(unique.x().value(), unique.y().value())
            }
            _ => None,
        }
        .ok_or_else(foreign_signing_key)
    }

    /// Signs a SHA-256 digest with the signing key: raw `r || s`, 32 bytes each, big-endian.
    pub fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<[u8; 64], TpmError> {
        let key = self.signing_key()?;
        let null_ticket = TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        };
        let ticket = HashcheckTicket::try_from(null_ticket).map_err(|e| self.err("ticket", e))?;
        let d = Digest::try_from(digest.to_vec()).map_err(|e| self.err("Digest", e))?;
        let sig = self
            .cmd(Some(AuthSession::Password), |c| {
                c.sign(key, d, SignatureScheme::Null, ticket)
            })
            .map_err(|e| self.err("TPM2_Sign", e))?;
        let Signature::EcDsa(sig) = sig else {
            return Err(foreign_signing_key());
        };
        let r = objects::left_pad32(sig.signature_r().value()).ok_or_else(foreign_signing_key)?;
        let s = objects::left_pad32(sig.signature_s().value()).ok_or_else(foreign_signing_key)?;
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&r);
        out[32..].copy_from_slice(&s);
        Ok(out)
    }

    /// Runs one TPM command with `session` in slot 1 (None: no session), counting it.
    fn cmd<T>(
        &mut self,
        session: Option<AuthSession>,
        f: impl FnOnce(&mut Context) -> tss_esapi::Result<T>,
    ) -> tss_esapi::Result<T> {
        self.commands += 1;
        self.ctx.execute_with_session(session, f)
    }

    /// Runs `f`, then flushes `handle` whether or not `f` failed; `f`'s error wins.
    fn with_flushed<T>(
        &mut self,
        handle: ObjectHandle,
        f: impl FnOnce(&mut Self) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let result = f(self);
        let flushed = self.cmd(None, |c| c.flush_context(handle));
        let value = result?;
        flushed.map_err(|e| self.err("TPM2_FlushContext", e))?;
        Ok(value)
    }

    /// A session salted with `tpm_key`, with AES-128-CFB parameter encryption of the first
    /// command parameter (`decrypt`) and/or the first response parameter (`encrypt`).
    fn salted_session(
        &mut self,
        tpm_key: KeyHandle,
        kind: SessionType,
        decrypt: bool,
        encrypt: bool,
    ) -> Result<AuthSession, TpmError> {
        let (aes, sha) = (SymmetricDefinition::AES_128_CFB, HashingAlgorithm::Sha256);
        let session = self
            .cmd(None, |c| {
                c.start_auth_session(Some(tpm_key), None, None, kind, aes, sha)
            })
            .and_then(|s| s.ok_or(TssError::WrapperError(WrapperErrorKind::WrongValueFromTpm)))
            .map_err(|e| self.err("TPM2_StartAuthSession", e))?;
        let (attrs, mask) = SessionAttributesBuilder::new()
            .with_continue_session(true)
            .with_decrypt(decrypt)
            .with_encrypt(encrypt)
            .build();
        if let Err(e) = self.ctx.tr_sess_set_attributes(session, attrs, mask) {
            let _ = self.cmd(None, |c| c.flush_context(session_object(session)));
            return Err(self.err("Esys_TRSess_SetAttributes", e));
        }
        Ok(session)
    }

    /// The PolicyPCR digest over the current SHA-256 values of the configured PCRs.
    fn current_pcr_policy(&mut self) -> Result<[u8; 32], TpmError> {
        let sel = objects::pcr_selection(&self.pcrs).map_err(|e| self.err("PCR selection", e))?;
        let (_, read, values) = self
            .cmd(None, |c| c.pcr_read(sel))
            .map_err(|e| self.err("TPM2_PCR_Read", e))?;
        let values: Vec<&[u8]> = values.value().iter().map(|d| d.value()).collect();
        if values.len() != self.pcrs.len() || read.len() != 1 {
            return Err(TpmError::Call {
                op: "TPM2_PCR_Read",
                rc: format!(
                    "{} of {} PCR values returned",
                    values.len(),
                    self.pcrs.len()
                ),
                hint: "check that the TPM has an allocated SHA-256 PCR bank (tpm2_getcap pcrs)",
            });
        }
        Ok(objects::policy_pcr_digest(&self.pcrs, &values))
    }

    /// Key versions present, oldest first.
    fn kek_versions(&mut self) -> Result<Vec<u32>, TpmError> {
        let handles = self.our_handles()?;
        Ok(handles
            .into_iter()
            .filter(|&h| h < SIGNING_HANDLE)
            .map(|h| h - KEK_HANDLE_BASE)
            .collect())
    }

    /// offbox's persistent handles present (0x810FF001..=0x810FF100), ascending.
    fn our_handles(&mut self) -> Result<Vec<u32>, TpmError> {
        let first = KEK_HANDLE_BASE + 1;
        let (data, _) = self
            .cmd(None, |c| {
                c.get_capability(CapabilityType::Handles, first, 256)
            })
            .map_err(|e| self.err("TPM2_GetCapability", e))?;
        let CapabilityData::Handles(list) = data else {
            return Ok(Vec::new());
        };
        let mut handles: Vec<u32> = list
            .iter()
            .map(|&h| u32::from(h))
            .filter(|h| (first..=SIGNING_HANDLE).contains(h))
            .collect();
        handles.sort_unstable();
        Ok(handles)
    }

    /// The ESYS handle and Name of persistent object `handle`, or None when it is empty.
    fn persistent(&mut self, handle: u32) -> Result<Option<(KeyHandle, Vec<u8>)>, TpmError> {
        if let Some(found) = self.keys.get(&handle) {
            return Ok(Some(found.clone()));
        }
        let tpm_handle = TpmHandle::Persistent(
            PersistentTpmHandle::new(handle).map_err(|e| self.err("handle", e))?,
        );
        match self.cmd(None, |c| c.tr_from_tpm_public(tpm_handle)) {
            Ok(obj) => {
                let name = self
                    .ctx
                    .tr_get_name(obj)
                    .map_err(|e| self.err("Esys_TR_GetName", e))?;
                let found = (KeyHandle::from(obj), name.value().to_vec());
                self.keys.insert(handle, found.clone());
                Ok(Some(found))
            }
            Err(e) if kind_of(&e) == Some(Rc::Handle) => Ok(None),
            Err(e) => Err(self.err("TPM2_ReadPublic", e)),
        }
    }

    fn signing_key(&mut self) -> Result<KeyHandle, TpmError> {
        match self.persistent(SIGNING_HANDLE)? {
            Some((key, _)) => Ok(key),
            None => Err(TpmError::NoSigningKey {
                tcti: self.tcti.clone(),
            }),
        }
    }

    /// CreatePrimary from `template` under Owner, persist it at `handle`, flush the transient.
    fn create_persistent(&mut self, template: Public, handle: u32) -> Result<(), TpmError> {
        let persistent = Persistent::Persistent(
            PersistentTpmHandle::new(handle).map_err(|e| self.err("handle", e))?,
        );
        let primary = self
            .cmd(Some(AuthSession::Password), |c| {
                c.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(|e| self.err("TPM2_CreatePrimary", e))?
            .key_handle;
        let stored = self.with_flushed(primary.into(), |me| {
            me.cmd(Some(AuthSession::Password), |c| {
                c.evict_control(Provision::Owner, primary.into(), persistent)
            })
            .map_err(|e| me.err("TPM2_EvictControl", e))
        })?;
        let name = self
            .ctx
            .tr_get_name(stored)
            .map_err(|e| self.err("Esys_TR_GetName", e))?;
        self.keys
            .insert(handle, (KeyHandle::from(stored), name.value().to_vec()));
        Ok(())
    }

    /// Removes persistent object `handle` (EvictControl).
    fn evict(&mut self, handle: u32) -> Result<(), TpmError> {
        let Some((obj, _)) = self.persistent(handle)? else {
            return Ok(());
        };
        let persistent = Persistent::Persistent(
            PersistentTpmHandle::new(handle).map_err(|e| self.err("handle", e))?,
        );
        self.cmd(Some(AuthSession::Password), |c| {
            c.evict_control(Provision::Owner, obj.into(), persistent)
        })
        .map_err(|e| self.err("TPM2_EvictControl", e))?;
        self.keys.remove(&handle);
        Ok(())
    }

    fn err(&self, op: &'static str, e: TssError) -> TpmError {
        error::classify(&self.tcti, op, e)
    }

    fn not_initialized(&self) -> TpmError {
        TpmError::NotInitialized {
            tcti: self.tcti.clone(),
        }
    }
}

impl Custodian for TpmCustodian {
    fn name(&self) -> &'static str {
        "tpm"
    }
}

impl SlotRecipient for TpmCustodian {
    fn wrap(&mut self, dek: &Dek, ctx: &SlotContext<'_>) -> Result<KeySlot, KeyError> {
        Ok(self.wrap_inner(dek, ctx)?)
    }
}

impl SlotIdentity for TpmCustodian {
    fn unwrap(&mut self, slot: &KeySlot, ctx: &SlotContext<'_>) -> Result<Option<Dek>, KeyError> {
        let KeySlot::Tpm {
            key_version,
            parent_name,
            pcrs,
            public,
            private,
        } = slot
        else {
            return Ok(None);
        };
        let plain = self.unwrap_inner(*key_version, parent_name, pcrs, public, private)?;
        match super::unbind_key(&plain, ctx) {
            Ok(k) => Ok(Some(k)),
            Err(true) => Err(KeyError::SlotMoved { slot: "tpm" }),
            Err(false) => Err(TpmError::BadSlot {
                what: "the sealed data has the wrong length".into(),
            }
            .into()),
        }
    }
}

impl Device for TpmCustodian {
    fn init(&mut self, replace: bool) -> Result<KeyVersion, KeyError> {
        Ok(self.init_inner(replace)?)
    }

    fn status(&mut self) -> Result<DeviceStatus, KeyError> {
        Ok(self.status_inner()?)
    }

    fn rotate(&mut self) -> Result<KeyVersion, KeyError> {
        Ok(TpmCustodian::rotate(self)?)
    }

    fn retire(&mut self, version: u32) -> Result<(), KeyError> {
        Ok(TpmCustodian::retire(self, version)?)
    }

    fn signing_key(&mut self) -> Result<crate::format::signature::PublicKey, KeyError> {
        let der = self.signing_public_key_spki_der()?;
        crate::format::signature::PublicKey::from_spki_der(&der).map_err(|_| {
            KeyError::from(TpmError::BadSlot {
                what: "the TPM signing key is not a P-256 key".into(),
            })
        })
    }

    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<[u8; 64], KeyError> {
        Ok(TpmCustodian::sign_digest(self, digest)?)
    }
}

fn location(handle: u32) -> String {
    format!("TPM persistent handle {handle:#010x}")
}

fn session_object(session: AuthSession) -> ObjectHandle {
    SessionHandle::from(session).into()
}

fn pcr_list(pcrs: &[u8]) -> String {
    pcrs.iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn foreign_signing_key() -> TpmError {
    TpmError::Call {
        op: "reading the signing key",
        rc: "not an ECDSA P-256 key".into(),
        hint: "persistent handle 0x810ff100 holds a key offbox did not create; evict it (tpm2_evictcontrol -c 0x810ff100) and run `offbox keys init --replace`",
    }
}
