//! The key versions' lifecycle on the TPM: init (never reusing a version number), rotate,
//! retire, and the status report.

use tss_esapi::constants::{CapabilityType, PropertyTag};
use tss_esapi::structures::CapabilityData;

use super::*;

impl TpmCustodian {
    /// Creates key version N+1 (N = newest) and makes it current.
    pub fn rotate(&mut self) -> Result<KeyVersion, TpmError> {
        let newest = *self
            .kek_versions()?
            .last()
            .ok_or_else(|| self.not_initialized())?;
        if newest >= MAX_VERSION {
            return Err(TpmError::TooManyVersions { newest });
        }
        let next = newest + 1;
        let template = objects::kek_template(next).map_err(|e| self.err("key template", e))?;
        self.create_persistent(template, Self::kek_handle(next))?;
        Ok(KeyVersion {
            version: next,
            location: location(Self::kek_handle(next)),
            current: true,
        })
    }

    /// Evicts key version `version`; slots sealed under it no longer open here.
    /// Refuses the current version.
    pub fn retire(&mut self, version: u32) -> Result<(), TpmError> {
        let versions = self.kek_versions()?;
        let handle = Self::kek_handle(version);
        if !versions.contains(&version) {
            return Err(TpmError::VersionMissing { version, handle });
        }
        if versions.last() == Some(&version) {
            return Err(TpmError::RetireCurrent { version });
        }
        self.evict(handle)
    }

    pub(super) fn init_inner(&mut self, replace: bool) -> Result<KeyVersion, TpmError> {
        let existing = self.our_handles()?;
        if !existing.is_empty() && !replace {
            let newest = existing.iter().filter(|&&h| h < SIGNING_HANDLE).max();
            return Err(TpmError::AlreadyInitialized {
                tcti: self.tcti.clone(),
                version: newest.map_or(0, |h| h - KEK_HANDLE_BASE),
            });
        }
        // A version number is never used twice: the new KEK comes after every version present.
        let next = existing
            .iter()
            .filter(|&&h| h < SIGNING_HANDLE)
            .map(|h| h - KEK_HANDLE_BASE)
            .max()
            .unwrap_or(0)
            + 1;
        if next > MAX_VERSION {
            return Err(TpmError::VersionMissing {
                version: next,
                handle: Self::kek_handle(next),
            });
        }
        for handle in existing {
            if handle != SIGNING_HANDLE {
                self.evict(handle)?;
            }
        }
        let kek = objects::kek_template(next).map_err(|e| self.err("key template", e))?;
        self.create_persistent(kek, Self::kek_handle(next))?;
        // The signing key is a primary derived from the owner seed: it stays the same key
        // until the TPM is cleared, so the archives it signed keep verifying.
        if self.persistent(SIGNING_HANDLE)?.is_none() {
            let signing = objects::signing_template().map_err(|e| self.err("key template", e))?;
            self.create_persistent(signing, SIGNING_HANDLE)?;
        }
        Ok(KeyVersion {
            version: next,
            location: location(Self::kek_handle(next)),
            current: true,
        })
    }

    pub(super) fn status_inner(&mut self) -> Result<DeviceStatus, TpmError> {
        let (data, _) = self
            .cmd(None, |c| {
                c.get_capability(
                    CapabilityType::TpmProperties,
                    PropertyTag::Manufacturer.into(),
                    8,
                )
            })
            .map_err(|e| self.err("TPM2_GetCapability", e))?;
        let device = match data {
            CapabilityData::TpmProperties(props) => objects::describe(&props),
            _ => "TPM 2.0".into(),
        };
        let versions = self.kek_versions()?;
        let newest = versions.last().copied();
        let versions = versions
            .into_iter()
            .map(|v| KeyVersion {
                version: v,
                location: location(Self::kek_handle(v)),
                current: Some(v) == newest,
            })
            .collect();
        Ok(DeviceStatus {
            backend: "tpm",
            module: self.tcti.clone(),
            device,
            versions,
        })
    }
}
