//! The archive signing key pair inside the token: ECDSA P-256, private key non-extractable.
//! SoftHSM has no CKM_ECDSA_SHA256, so callers hash first and the token signs the digest
//! with raw CKM_ECDSA, giving `r || s`.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::error::{call_error, Pkcs11Error};
use crate::format::signature::{PublicKey, P256_EC_PARAMS};

/// Label and id of the signing key pair derived from the KEK label.
pub fn label(kek_label: &str) -> String {
    format!("{kek_label}-sign")
}

fn find(
    session: &Session,
    kek_label: &str,
    class: ObjectClass,
) -> Result<Option<ObjectHandle>, Pkcs11Error> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label(kek_label).into_bytes()),
        ])
        .map_err(|e| call_error(e, "the token could not be searched"))?;
    Ok(found.first().copied())
}

/// Generates the key pair unless it exists; returns whether it created one.
pub fn ensure(session: &Session, kek_label: &str) -> Result<bool, Pkcs11Error> {
    if find(session, kek_label, ObjectClass::PRIVATE_KEY)?.is_some() {
        return Ok(false);
    }
    let l = label(kek_label).into_bytes();
    session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::EcParams(P256_EC_PARAMS.to_vec()),
                Attribute::Label(l.clone()),
                Attribute::Id(l.clone()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::Label(l.clone()),
                Attribute::Id(l),
            ],
        )
        .map_err(|e| call_error(e, "the token could not generate the signing key"))?;
    Ok(true)
}

/// Removes the key pair (used by `keys init --replace`).
pub fn destroy(session: &Session, kek_label: &str) -> Result<(), Pkcs11Error> {
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        if let Some(h) = find(session, kek_label, class)? {
            session
                .destroy_object(h)
                .map_err(|e| call_error(e, "the token refused to delete the old signing key"))?;
        }
    }
    Ok(())
}

fn missing(kek_label: &str) -> Pkcs11Error {
    Pkcs11Error::Call {
        function: "C_FindObjects".into(),
        rv: format!("no signing key labelled \"{}\"", label(kek_label)),
        hint: "run `offbox keys init` to create it",
    }
}

/// The verification key, read from the token's public key object.
pub fn public_key(session: &Session, kek_label: &str) -> Result<PublicKey, Pkcs11Error> {
    let h = find(session, kek_label, ObjectClass::PUBLIC_KEY)?.ok_or_else(|| missing(kek_label))?;
    let attrs = session
        .get_attributes(h, &[AttributeType::EcPoint])
        .map_err(|e| call_error(e, "the token did not return the public key"))?;
    for a in attrs {
        if let Attribute::EcPoint(p) = a {
            // CKA_EC_POINT is a DER OCTET STRING; some tokens return the bare point.
            let point = match p.as_slice() {
                [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
                _ => p,
            };
            return PublicKey::from_point(&point).map_err(|_| Pkcs11Error::Call {
                function: "C_GetAttributeValue".into(),
                rv: "CKA_EC_POINT is not a P-256 point".into(),
                hint: "recreate the signing key with `offbox keys init --replace`",
            });
        }
    }
    Err(missing(kek_label))
}

/// Signs a SHA-256 digest with raw CKM_ECDSA: returns `r || s`.
pub fn sign_digest(
    session: &Session,
    kek_label: &str,
    digest: &[u8; 32],
) -> Result<[u8; 64], Pkcs11Error> {
    let h =
        find(session, kek_label, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| missing(kek_label))?;
    let sig = session
        .sign(&Mechanism::Ecdsa, h, digest)
        .map_err(|e| call_error(e, "the token could not sign the archive"))?;
    sig.as_slice().try_into().map_err(|_| Pkcs11Error::Call {
        function: "C_Sign".into(),
        rv: format!("a {}-byte signature instead of 64", sig.len()),
        hint: "the token's ECDSA output is not raw r||s",
    })
}
