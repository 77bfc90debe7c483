//! Errors of the TPM custodian, and how TSS response codes map onto them. Every message says
//! what is wrong and what the operator should do; unclassified TPM errors name the command and
//! the response code (`TPM2_Load failed: TPM_RC_INTEGRITY (0x000001df: ...)`).

use thiserror::Error;
use tss_esapi::constants::response_code::{Tss2ResponseCode, Tss2ResponseCodeKind as Rc};
use tss_esapi::Error as TssError;

/// What went wrong with the TPM or its keys, and what to do about it.
#[derive(Debug, Error)]
pub enum TpmError {
    /// The `[keys.tpm]` table is wrong.
    #[error("keys.tpm: {what}; fix the config")]
    Config {
        /// What is wrong.
        what: String,
    },
    /// No connection to the TPM.
    #[error("cannot reach the TPM at TCTI \"{tcti}\" ({detail}): is swtpm/tpm2-abrmd running, does the service user have access to /dev/tpmrm0 (udev rules, group tss), and is the TCTI library libtss2-tcti-* installed?")]
    Unreachable {
        /// The configured TCTI.
        tcti: String,
        /// The TSS's error.
        detail: String,
    },
    /// `keys init` has not run on this TPM.
    #[error("the TPM at \"{tcti}\" holds no offbox key-encryption key (persistent handles 0x810ff001..0x810ff0ff are empty); run `offbox keys init`")]
    NotInitialized {
        /// The configured TCTI.
        tcti: String,
    },
    /// The signing key's handle is empty.
    #[error("the TPM at \"{tcti}\" holds no offbox signing key at 0x810ff100; run `offbox keys init` (with --replace if key versions exist: version 1 and the signing key are re-derived identically, later versions are dropped)")]
    NoSigningKey {
        /// The configured TCTI.
        tcti: String,
    },
    /// `keys init` found keys already.
    #[error("the TPM at \"{tcti}\" already holds offbox keys (newest key-encryption key version {version}); archives depend on them. Use `offbox keys rotate` for a new version, or `offbox keys init --replace` only if you are sure no archive needs the later versions")]
    AlreadyInitialized {
        /// The configured TCTI.
        tcti: String,
        /// The newest version present (0: only the signing key).
        version: u32,
    },
    /// The slot names a version whose persistent key is not here.
    #[error("key version {version} is not in this TPM (persistent handle {handle:#010x} is empty): it was retired, or the archive's device slot was sealed by another TPM; restore it through the recovery slot with custodian shares")]
    VersionMissing {
        /// The version the slot names.
        version: u32,
        /// Its persistent handle.
        handle: u32,
    },
    /// The slot's parent is a different key than this TPM's key of that version.
    #[error("this archive's device slot was sealed by another TPM (its key version {version} differs from this TPM's); restore it through the recovery slot with custodian shares")]
    OtherTpm {
        /// The version the slot names.
        version: u32,
    },
    /// The PCR policy did not hold.
    #[error("the platform state changed (PCR {pcrs}, SHA-256 bank) since the archive was written, so the TPM refuses to unseal its device slot; if the change is expected (firmware, bootloader or kernel update), restore through the recovery slot with custodian shares and write new archives; otherwise investigate the boot chain")]
    PcrChanged {
        /// The PCR indexes the slot is bound to.
        pcrs: String,
    },
    /// TPM_RC_LOCKOUT.
    #[error("{op} failed: TPM_RC_LOCKOUT: the TPM is in dictionary-attack lockout; wait until it recovers (tpm2_getcap properties-variable shows TPM_PT_LOCKOUT_*), or clear it with the lockout authorization (tpm2_dictionarylockout --clear-lockout)")]
    Lockout {
        /// The TPM command.
        op: &'static str,
    },
    /// The owner hierarchy has an auth value.
    #[error("{op} failed: {rc}: the TPM's owner hierarchy has an authorization value, and offbox uses the empty owner auth; clear it (tpm2_changeauth -c owner -p OLD) or run offbox on a TPM whose owner auth is empty")]
    OwnerAuth {
        /// The TPM command.
        op: &'static str,
        /// The response code.
        rc: String,
    },
    /// `retire` of the version new archives use.
    #[error("key version {version} is the current version that new archives are sealed with; run `offbox keys rotate` first, then retire it")]
    RetireCurrent {
        /// The version.
        version: u32,
    },
    /// Version numbers are used up.
    #[error("the TPM already holds key version {newest}, the highest offbox supports; archives cannot be sealed under a newer one. Re-initialize with `offbox keys init --replace` after all archives have been re-written")]
    TooManyVersions {
        /// The newest version.
        newest: u32,
    },
    /// TPM_RC_NV_SPACE and friends on EvictControl.
    #[error("{op} failed: {rc}: the TPM has no room for another persistent key; retire old key versions (`offbox keys retire N`) or evict unused persistent handles (tpm2_getcap handles-persistent)")]
    NoRoom {
        /// The TPM command.
        op: &'static str,
        /// The response code.
        rc: String,
    },
    /// The slot bytes are not a sealed object this TPM accepts.
    #[error("the archive's TPM device slot is malformed or was altered ({what}); restore it through the recovery slot with custodian shares")]
    BadSlot {
        /// What is wrong.
        what: String,
    },
    /// Any other failing call.
    #[error("{op} failed: {rc}; {hint}")]
    Call {
        /// The TPM command or ESAPI function.
        op: &'static str,
        /// The response code, named.
        rc: String,
        /// What to check.
        hint: &'static str,
    },
}

impl TpmError {
    /// For a failing TPM command: the command and its response code, as data.
    pub fn call(&self) -> Option<(String, String)> {
        match self {
            TpmError::Call { op, rc, .. }
            | TpmError::OwnerAuth { op, rc }
            | TpmError::NoRoom { op, rc } => Some((op.to_string(), rc.clone())),
            TpmError::Lockout { op } => Some((op.to_string(), "TPM_RC_LOCKOUT".into())),
            _ => None,
        }
    }
}

/// Maps a TSS error from command `op` to a [`TpmError`]; `tcti` names the TPM.
pub(super) fn classify(tcti: &str, op: &'static str, e: TssError) -> TpmError {
    let rc = rc_text(e);
    match (raw_rc(&e) >> 16, kind_of(&e)) {
        (TCTI_LAYER, _) => TpmError::Unreachable { tcti: tcti.to_owned(), detail: format!("{op}: {rc}") },
        (_, Some(Rc::Lockout)) => TpmError::Lockout { op },
        (_, Some(Rc::BadAuth | Rc::AuthFail))
            if matches!(op, "TPM2_CreatePrimary" | "TPM2_EvictControl") =>
        {
            TpmError::OwnerAuth { op, rc }
        }
        (_, Some(Rc::NvSpace | Rc::NvDefined | Rc::ObjectMemory)) if op == "TPM2_EvictControl" => {
            TpmError::NoRoom { op, rc }
        }
        (_, Some(Rc::Retry | Rc::Testing | Rc::Yielded | Rc::NvRate | Rc::ObjectMemory | Rc::SessionMemory)) => {
            TpmError::Call { op, rc, hint: "the TPM is busy or out of memory for objects or sessions; retry in a few seconds, and use the kernel resource manager (device:/dev/tpmrm0) or tpm2-abrmd rather than /dev/tpm0" }
        }
        (ESAPI_LAYER, _) if raw_rc(&e) & 0xFFFF == 27 => TpmError::Call {
            op,
            rc,
            hint: "the TPM's response failed its HMAC check: something between offbox and the TPM altered it; check the TPM bus and the TCTI path",
        },
        _ => TpmError::Call { op, rc, hint: "check the TPM with tpm2_getcap properties-variable, and the service's TCTI" },
    }
}

const ESAPI_LAYER: u32 = 7;
const TCTI_LAYER: u32 = 10;

/// The raw TSS2_RC (layer in bits 16..24), or 0 for wrapper errors. tss-esapi 7 does not expose
/// it, but prints it as "Response code value: 0x...".
pub(super) fn raw_rc(e: &TssError) -> u32 {
    let text = match e {
        TssError::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => rc.to_string(),
        TssError::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => rc.to_string(),
        _ => return 0,
    };
    let hex = text.rsplit("0x").next().unwrap_or_default();
    u32::from_str_radix(hex.trim(), 16).unwrap_or(0)
}

/// The TPM response code kind, only for codes from the TPM itself (layer 0, or 12 when
/// relayed by a resource manager); the kind ignores the layer, so other layers would alias.
pub(super) fn kind_of(e: &TssError) -> Option<Rc> {
    match e {
        TssError::Tss2Error(rc) if matches!(raw_rc(e) >> 16, 0 | 12) => rc.kind(),
        _ => None,
    }
}

/// "TPM_RC_POLICY_FAIL (0x0000099d: a policy check failed)", "TCTI TSS2_BASE_RC_IO_ERROR
/// (0x000a000a)" and the like.
pub(super) fn rc_text(e: TssError) -> String {
    let raw = raw_rc(&e);
    match (e, kind_of(&e)) {
        (TssError::WrapperError(k), _) => format!("tss-esapi: {k}"),
        (TssError::Tss2Error(rc), Some(kind)) => {
            let mut name = String::from("TPM_RC");
            for c in format!("{kind:?}").chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            format!("{name} ({raw:#010x}: {rc})")
        }
        (TssError::Tss2Error(_), None) => {
            let layer = match raw >> 16 {
                0 => "TPM",
                6 => "FAPI",
                ESAPI_LAYER => "ESAPI",
                8 => "SAPI",
                9 => "marshalling",
                TCTI_LAYER => "TCTI",
                _ => "resource manager",
            };
            let base = match raw & 0xFFFF {
                1 => " TSS2_BASE_RC_GENERAL_FAILURE",
                8 => " TSS2_BASE_RC_NO_CONNECTION",
                9 => " TSS2_BASE_RC_TRY_AGAIN",
                10 => " TSS2_BASE_RC_IO_ERROR",
                27 => " TSS2_BASE_RC_RSP_AUTH_FAILED",
                _ => "",
            };
            format!("{layer}{base} ({raw:#010x})")
        }
    }
}
