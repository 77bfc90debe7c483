//! Finding the configured token and logging in to it, with errors that name the token, the
//! PIN's source and what to do.

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};

use super::error::{call_error, Pkcs11Error};
use super::Pkcs11Config;
use crate::keys::pin::read_secret;
use crate::keys::KeyError;

/// The slot holding the token labelled `cfg.token_label`; the error lists the labels present.
pub(super) fn find_token(
    ctx: &Pkcs11,
    cfg: &Pkcs11Config,
    module: &str,
) -> Result<(Slot, TokenInfo), Pkcs11Error> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| call_error(e, "check that the HSM is connected"))?;
    let mut present = Vec::new();
    let mut found = None;
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| call_error(e, "check that the HSM is connected"))?;
        let label = info.label().trim_end().to_string();
        if label == cfg.token_label && found.is_none() {
            found = Some((slot, info));
        }
        present.push(if label.is_empty() {
            "(an uninitialized token)".to_string()
        } else {
            format!("\"{label}\"")
        });
    }
    found.ok_or_else(|| Pkcs11Error::TokenNotFound {
        label: cfg.token_label.clone(),
        module: module.to_string(),
        present: if present.is_empty() {
            "none".into()
        } else {
            present.join(", ")
        },
    })
}

/// Logs in as the user with the configured PIN (read from its file or variable).
pub(super) fn login(session: &Session, cfg: &Pkcs11Config) -> Result<(), KeyError> {
    let source = cfg.pin_source();
    let pin = read_secret(&source, "PKCS#11 user PIN")?;
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(Pkcs11Error::WrongPin {
            source_desc: source.to_string(),
            token: cfg.token_label.clone(),
        }
        .into()),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Pkcs11Error::PinLocked {
            token: cfg.token_label.clone(),
        }
        .into()),
        Err(e) => Err(call_error(e, "check the PIN and the token state").into()),
    }
}
