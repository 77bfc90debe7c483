//! Sealing and unsealing data keys: a device slot is `DEK || binding` sealed as a KeyedHash
//! object under the current key version, through a salted session with parameter encryption
//! (and a PolicyPCR session when the slot is bound to PCRs).

use tss_esapi::constants::response_code::Tss2ResponseCodeKind as Rc;
use tss_esapi::constants::SessionType;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{Digest, SensitiveData};

use super::error::{kind_of, rc_text};
use super::*;

impl TpmCustodian {
    pub(super) fn wrap_inner(
        &mut self,
        dek: &Dek,
        ctx: &SlotContext<'_>,
    ) -> Result<KeySlot, TpmError> {
        let version = *self
            .kek_versions()?
            .last()
            .ok_or_else(|| self.not_initialized())?;
        let handle = Self::kek_handle(version);
        let (kek, parent_name) = self
            .persistent(handle)?
            .ok_or(TpmError::VersionMissing { version, handle })?;
        let policy = if self.pcrs.is_empty() {
            None
        } else {
            Some(self.current_pcr_policy()?)
        };
        let template = objects::sealed_template(policy).map_err(|e| self.err("template", e))?;
        // Version 2 seals DEK || binding, so the slot opens only in its own archive.
        let data = SensitiveData::try_from(crate::keys::bound_key(dek, ctx).to_vec())
            .map_err(|e| self.err("SensitiveData", e))?;
        let session = self.salted_session(kek, SessionType::Hmac, true, false)?;
        let created = self.with_flushed(session_object(session), |me| {
            me.cmd(Some(session), |c| {
                c.create(kek, template, None, Some(data), None, None)
            })
            .map_err(|e| me.err("TPM2_Create", e))
        })?;
        let public = objects::public_to_tpm2b(created.out_public)
            .map_err(|e| self.err("marshalling TPM2B_PUBLIC", e))?;
        Ok(KeySlot::Tpm {
            key_version: version,
            parent_name,
            pcrs: self.pcrs.clone(),
            public,
            private: objects::private_to_tpm2b(&created.out_private),
        })
    }

    pub(super) fn unwrap_inner(
        &mut self,
        version: u32,
        parent_name: &[u8],
        pcrs: &[u8],
        public: &[u8],
        private: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
        let bad = |what: &str| TpmError::BadSlot { what: what.into() };
        if version == 0 || version > MAX_VERSION {
            return Err(bad("its key version is out of range"));
        }
        if pcrs.len() > MAX_PCRS || pcrs.iter().any(|&p| p > 23) || !pcrs.is_sorted_by(|a, b| a < b)
        {
            return Err(bad("invalid PCR list"));
        }
        let public = objects::sealed_public_from_tpm2b(public)
            .ok_or_else(|| bad("TPM2B_PUBLIC is not a sealed data object"))?;
        let private =
            objects::private_from_tpm2b(private).ok_or_else(|| bad("malformed TPM2B_PRIVATE"))?;
        let handle = Self::kek_handle(version);
        let (kek, name) = self
            .persistent(handle)?
            .ok_or(TpmError::VersionMissing { version, handle })?;
        if name != parent_name {
            return Err(TpmError::OtherTpm { version });
        }
        let kind = if pcrs.is_empty() {
            SessionType::Hmac
        } else {
            SessionType::Policy
        };
        let session = self.salted_session(kek, kind, false, true)?;
        let data = self.with_flushed(session_object(session), |me| {
            if !pcrs.is_empty() {
                let policy = PolicySession::try_from(session).map_err(|e| me.err("session", e))?;
                let sel = objects::pcr_selection(pcrs).map_err(|e| me.err("PCR selection", e))?;
                me.cmd(None, |c| c.policy_pcr(policy, Digest::default(), sel))
                    .map_err(|e| me.err("TPM2_PolicyPCR", e))?;
            }
            // Load has no secret parameter: a password session for the (empty) parent auth.
            let obj = me
                .cmd(Some(AuthSession::Password), |c| {
                    c.load(kek, private, public)
                })
                .map_err(|e| match kind_of(&e) {
                    Some(Rc::Integrity | Rc::Size | Rc::Value) => {
                        bad(&format!("TPM2_Load: {}", rc_text(e)))
                    }
                    _ => me.err("TPM2_Load", e),
                })?;
            me.with_flushed(obj.into(), |me| {
                me.cmd(Some(session), |c| c.unseal(obj.into()))
                    .map_err(|e| match kind_of(&e) {
                        Some(Rc::PolicyFail | Rc::PcrChanged) if !pcrs.is_empty() => {
                            TpmError::PcrChanged {
                                pcrs: pcr_list(pcrs),
                            }
                        }
                        Some(Rc::AuthUnavailable | Rc::PolicyFail) => bad(&format!(
                            "its PCR list does not match the sealed object's policy: {}",
                            rc_text(e)
                        )),
                        _ => me.err("TPM2_Unseal", e),
                    })
            })
        })?;
        Ok(zeroize::Zeroizing::new(data.value().to_vec()))
    }
}
