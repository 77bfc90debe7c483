//! Wrapping and unwrapping a data key with the KEK inside the token (CKM_AES_KEY_WRAP).
//!
//! Format version 2 wraps `DEK || binding`, a 64-byte `CKK_GENERIC_SECRET` session object,
//! so a slot opens only in the archive it was made for; version 1 wrapped the bare DEK as a
//! `CKK_AES` object. The value enters the token only as a session object, destroyed right
//! after the call, and the template's copy is zeroized.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::{Zeroize, Zeroizing};

use super::error::{call_error, rv_name, Pkcs11Error};
use crate::keys::{bound_key, unbind_key, KeyError, SlotContext};
use crate::secret::Dek;

fn key_type(ctx: &SlotContext<'_>) -> KeyType {
    if ctx.binding.is_some() {
        KeyType::GENERIC_SECRET
    } else {
        KeyType::AES
    }
}

/// Wraps `dek` (bound to `ctx`) under `kek`: the slot's wrapped bytes.
pub(super) fn wrap(
    session: &Session,
    kek: ObjectHandle,
    dek: &Dek,
    ctx: &SlotContext<'_>,
) -> Result<Vec<u8>, Pkcs11Error> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type(ctx)),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Value(bound_key(dek, ctx).to_vec()),
    ];
    let created = session.create_object(&template);
    for attr in template.iter_mut() {
        if let Attribute::Value(v) = attr {
            v.zeroize();
        }
    }
    let dek_obj = created.map_err(|e| call_error(e, "the token refused a session key"))?;
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrap, kek, dek_obj);
    let destroyed = session.destroy_object(dek_obj);
    let wrapped = wrapped.map_err(|e| call_error(e, "the token could not wrap the data key"))?;
    destroyed.map_err(|e| call_error(e, "the token could not drop the session key"))?;
    Ok(wrapped)
}

/// Unwraps `wrapped` under `kek` and checks its binding to `ctx`.
pub(super) fn unwrap(
    session: &Session,
    kek: ObjectHandle,
    wrapped: &[u8],
    ctx: &SlotContext<'_>,
) -> Result<Dek, KeyError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type(ctx)),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    let obj = match session.unwrap_key(&Mechanism::AesKeyWrap, kek, wrapped, &template) {
        Ok(o) => o,
        Err(CkError::Pkcs11(rv, _))
            if matches!(
                rv,
                RvError::WrappedKeyInvalid
                    | RvError::EncryptedDataInvalid
                    | RvError::WrappedKeyLenRange
                    | RvError::GeneralError
            ) =>
        {
            return Err(Pkcs11Error::UnwrapRefused { rv: rv_name(&rv) }.into())
        }
        Err(e) => return Err(call_error(e, "the token could not unwrap the data key").into()),
    };
    let attrs = session.get_attributes(obj, &[AttributeType::Value]);
    let destroyed = session.destroy_object(obj);
    let attrs = attrs.map_err(|e| call_error(e, "the token did not return the data key"))?;
    destroyed.map_err(|e| call_error(e, "the token could not drop the session key"))?;
    for attr in attrs {
        if let Attribute::Value(v) = attr {
            let v = Zeroizing::new(v);
            return match unbind_key(&v, ctx) {
                Ok(k) => Ok(k),
                Err(true) => Err(KeyError::SlotMoved { slot: "pkcs11" }),
                Err(false) => Err(Pkcs11Error::UnwrapRefused {
                    rv: format!(
                        "the unwrapped key is {} bytes, not the expected length",
                        v.len()
                    ),
                }
                .into()),
            };
        }
    }
    Err(Pkcs11Error::UnwrapRefused {
        rv: "the token returned no key value".into(),
    }
    .into())
}
