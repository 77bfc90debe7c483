//! The `[keys]` section of the config: which hardware custodian holds the key-encryption key,
//! and its settings. The config file embeds it; [`super::open_device`] takes only this
//! section, so key custody does not depend on the rest of the configuration.

use serde::Deserialize;

use super::pkcs11::Pkcs11Config;
#[cfg(feature = "tpm")]
use super::tpm::TpmConfig;
/// Without the TPM custodian built in, `[keys.tpm]` is accepted as any table, so that a
/// config stays readable (opening the device then says the TPM is not built in).
#[cfg(not(feature = "tpm"))]
pub type TpmConfig = toml::Table;

/// Which hardware holds the key-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A PKCS#11 HSM or token.
    Pkcs11,
    /// A TPM 2.0.
    Tpm,
}

impl Backend {
    /// The name used in the config and in reports: "pkcs11" or "tpm".
    pub fn name(self) -> &'static str {
        match self {
            Backend::Pkcs11 => "pkcs11",
            Backend::Tpm => "tpm",
        }
    }
}

/// `[keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The backend in use.
    pub backend: Backend,
    /// `[keys.pkcs11]`.
    pub pkcs11: Option<Pkcs11Config>,
    /// `[keys.tpm]`.
    pub tpm: Option<TpmConfig>,
}

impl KeysConfig {
    /// The backend named by `backend` when its own table (`[keys.pkcs11]`, `[keys.tpm]`) is
    /// missing; `None` when the section is complete.
    pub(crate) fn missing_table(&self) -> Option<&'static str> {
        let present = match self.backend {
            Backend::Pkcs11 => self.pkcs11.is_some(),
            Backend::Tpm => self.tpm.is_some(),
        };
        (!present).then_some(self.backend.name())
    }
}
