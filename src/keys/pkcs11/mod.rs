//! The PKCS#11 custodian: data keys wrapped by a non-extractable AES-256 key in a token.
//!
//! The key-encryption key (KEK) is generated inside the token with Token, Private,
//! Sensitive, Wrap and Unwrap set and Extractable cleared. Data keys are wrapped with
//! CKM_AES_KEY_WRAP (RFC 3394): the DEK enters the token as a session object, is wrapped,
//! and the session object is destroyed. Each KEK version is a separate token object with the
//! same label and the id `<label>-v<N>`.

mod error;
mod kek;
mod session;
mod sign;
mod wrap;

pub use error::{rv_name, Pkcs11Error};

use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::session::Session;
use serde::Deserialize;

use super::pin::SecretSource;
use super::{
    Custodian, Device, DeviceStatus, KeyError, KeyVersion, SlotContext, SlotIdentity, SlotRecipient,
};
use crate::format::KeySlot;
use crate::secret::Dek;
use error::call_error;

/// CKM_AES_KEY_WRAP, recorded in every PKCS#11 slot.
pub(crate) const CKM_AES_KEY_WRAP: u64 = 0x2109;

/// The `[keys.pkcs11]` table of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (.so).
    pub module: PathBuf,
    /// CKA_LABEL of the token.
    pub token_label: String,
    /// File holding the user PIN.
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN (used when no pin_file is set).
    pub pin_env: Option<String>,
    /// CKA_LABEL of the key-encryption key.
    #[serde(default = "default_key_label")]
    pub key_label: String,
}

fn default_key_label() -> String {
    "offbox-kek".into()
}

impl Pkcs11Config {
    /// Where the PIN comes from: `pin_file`, else `pin_env`, else `$OFFBOX_PKCS11_PIN`.
    pub(crate) fn pin_source(&self) -> SecretSource {
        match (&self.pin_file, &self.pin_env) {
            (Some(p), _) => SecretSource::File(p.clone()),
            (None, Some(v)) => SecretSource::Env(v.clone()),
            (None, None) => SecretSource::Env("OFFBOX_PKCS11_PIN".into()),
        }
    }
}

/// A logged-in session on the configured token.
pub struct Pkcs11Custodian {
    // Field order matters: the session closes before the library is finalized.
    session: Session,
    _ctx: Pkcs11,
    cfg: Pkcs11Config,
    token_desc: String,
}

impl Pkcs11Custodian {
    /// Loads the module, finds the token by label, and logs in with the configured PIN.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, KeyError> {
        let module = cfg.module.display().to_string();
        if !cfg.module.exists() {
            return Err(Pkcs11Error::ModuleNotFound {
                module,
                detail: "no such file".into(),
            }
            .into());
        }
        let ctx = Pkcs11::new(&cfg.module).map_err(|e| Pkcs11Error::ModuleNotFound {
            module: module.clone(),
            detail: e.to_string(),
        })?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| call_error(e, "the module failed to start; check its configuration"))?;
        let (slot, info) = session::find_token(&ctx, cfg, &module)?;
        let token_desc = format!(
            "\"{}\" ({} {}, serial {})",
            cfg.token_label,
            info.manufacturer_id().trim_end(),
            info.model().trim_end(),
            info.serial_number().trim_end()
        );
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| call_error(e, "check that the token is writable and not busy"))?;
        session::login(&session, cfg)?;
        Ok(Pkcs11Custodian {
            session,
            _ctx: ctx,
            cfg: cfg.clone(),
            token_desc,
        })
    }

    /// The logged-in session, for tests and lifecycle commands.
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn kek_missing(&self) -> Pkcs11Error {
        Pkcs11Error::KekMissing {
            label: self.cfg.key_label.clone(),
            token: self.cfg.token_label.clone(),
        }
    }
}

impl Custodian for Pkcs11Custodian {
    fn name(&self) -> &'static str {
        "pkcs11"
    }
}

impl SlotRecipient for Pkcs11Custodian {
    fn wrap(&mut self, dek: &Dek, ctx: &SlotContext<'_>) -> Result<KeySlot, KeyError> {
        let versions = kek::list(&self.session, &self.cfg.key_label)?;
        let (version, kek) = versions.last().copied().ok_or_else(|| self.kek_missing())?;
        let wrapped = wrap::wrap(&self.session, kek, dek, ctx)?;
        Ok(KeySlot::Pkcs11 {
            key_label: self.cfg.key_label.clone(),
            key_id: kek::id_for(&self.cfg.key_label, version),
            key_version: version,
            mechanism: CKM_AES_KEY_WRAP,
            wrapped,
        })
    }
}

impl SlotIdentity for Pkcs11Custodian {
    fn unwrap(&mut self, slot: &KeySlot, ctx: &SlotContext<'_>) -> Result<Option<Dek>, KeyError> {
        let KeySlot::Pkcs11 {
            key_label,
            key_version,
            mechanism,
            wrapped,
            ..
        } = slot
        else {
            return Ok(None);
        };
        if *mechanism != CKM_AES_KEY_WRAP {
            return Err(Pkcs11Error::Call {
                function: "C_UnwrapKey".into(),
                rv: "CKR_MECHANISM_INVALID".into(),
                hint: "the slot uses a mechanism this build does not support",
            }
            .into());
        }
        let versions = kek::list(&self.session, key_label)?;
        let Some(&(_, kek)) = versions.iter().find(|(v, _)| v == key_version) else {
            return Err(if versions.is_empty() {
                self.kek_missing()
            } else {
                Pkcs11Error::VersionMissing {
                    label: key_label.clone(),
                    version: *key_version,
                    token: self.cfg.token_label.clone(),
                }
            }
            .into());
        };
        wrap::unwrap(&self.session, kek, wrapped, ctx).map(Some)
    }
}

impl Device for Pkcs11Custodian {
    fn init(&mut self, replace: bool) -> Result<KeyVersion, KeyError> {
        let existing = kek::list(&self.session, &self.cfg.key_label)?;
        if let Some(&(version, _)) = existing.last() {
            if !replace {
                return Err(Pkcs11Error::KekExists {
                    label: self.cfg.key_label.clone(),
                    token: self.cfg.token_label.clone(),
                    version,
                }
                .into());
            }
        }
        // A version number is never used twice: the new KEK and signing key generation come
        // after every version and generation this token has held.
        let newest_sign = sign::newest_generation(&self.session, &self.cfg.key_label)?;
        let next = existing.last().map_or(0, |v| v.0).max(newest_sign) + 1;
        if replace {
            for (_, handle) in existing {
                self.session
                    .destroy_object(handle)
                    .map_err(|e| call_error(e, "the token refused to delete the old key"))?;
            }
            sign::retire_private(&self.session, &self.cfg.key_label)?;
        }
        kek::generate(&self.session, &self.cfg.key_label, next)?;
        sign::ensure(&self.session, &self.cfg.key_label, next)?;
        Ok(KeyVersion {
            version: next,
            location: self.location(next),
            current: true,
        })
    }

    fn rotate(&mut self) -> Result<KeyVersion, KeyError> {
        let next = self.current_version()? + 1;
        kek::generate(&self.session, &self.cfg.key_label, next)?;
        Ok(KeyVersion {
            version: next,
            location: self.location(next),
            current: true,
        })
    }

    fn retire(&mut self, version: u32) -> Result<(), KeyError> {
        let versions = kek::list(&self.session, &self.cfg.key_label)?;
        let current = versions.last().ok_or_else(|| self.kek_missing())?.0;
        if version == current {
            return Err(Pkcs11Error::RetireCurrent { version }.into());
        }
        let Some(&(_, handle)) = versions.iter().find(|(v, _)| *v == version) else {
            return Err(Pkcs11Error::VersionMissing {
                label: self.cfg.key_label.clone(),
                version,
                token: self.cfg.token_label.clone(),
            }
            .into());
        };
        self.session
            .destroy_object(handle)
            .map_err(|e| call_error(e, "the token refused to delete the key version"))?;
        Ok(())
    }

    fn signing_key(&mut self) -> Result<crate::format::signature::PublicKey, KeyError> {
        sign::public_key(&self.session, &self.cfg.key_label).map_err(|e| {
            // Neither key exists: the token was never initialised; say that.
            match kek::list(&self.session, &self.cfg.key_label) {
                Ok(v) if v.is_empty() => self.kek_missing().into(),
                _ => e.into(),
            }
        })
    }

    fn signing_keys(&mut self) -> Result<Vec<crate::format::signature::PublicKey>, KeyError> {
        Ok(sign::public_keys(&self.session, &self.cfg.key_label)?)
    }

    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<[u8; 64], KeyError> {
        Ok(sign::sign_digest(
            &self.session,
            &self.cfg.key_label,
            digest,
        )?)
    }

    fn status(&mut self) -> Result<DeviceStatus, KeyError> {
        let versions = kek::list(&self.session, &self.cfg.key_label)?;
        let newest = versions.last().map(|(v, _)| *v);
        Ok(DeviceStatus {
            backend: "pkcs11",
            module: self.cfg.module.display().to_string(),
            device: format!("token {}", self.token_desc),
            versions: versions
                .iter()
                .map(|(v, _)| KeyVersion {
                    version: *v,
                    location: self.location(*v),
                    current: Some(*v) == newest,
                })
                .collect(),
        })
    }
}

impl Pkcs11Custodian {
    fn current_version(&self) -> Result<u32, KeyError> {
        let versions = kek::list(&self.session, &self.cfg.key_label)?;
        Ok(versions.last().ok_or_else(|| self.kek_missing())?.0)
    }

    fn location(&self, version: u32) -> String {
        format!(
            "token \"{}\", label \"{}\", id \"{}\"",
            self.cfg.token_label,
            self.cfg.key_label,
            String::from_utf8_lossy(&kek::id_for(&self.cfg.key_label, version))
        )
    }
}
