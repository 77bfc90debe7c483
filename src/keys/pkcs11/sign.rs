//! The archive signing key pair inside the token: ECDSA P-256, private key non-extractable,
//! in generations (a replaced generation keeps its public half, so old archives verify).
//! SoftHSM has no CKM_ECDSA_SHA256, so callers hash first and the token signs the digest
//! with raw CKM_ECDSA, giving `r || s`.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::error::{call_error, Pkcs11Error};
use crate::format::signature::{PublicKey, P256_EC_PARAMS};

/// Label and id of generation `generation` of the signing key pair: `<kek>-sign` for the
/// first (as older builds named it), `<kek>-sign-v<N>` for the generations that
/// `keys init --replace` makes. A replaced generation keeps its public key object, so the
/// archives it signed still verify; its private key is destroyed.
pub fn label(kek_label: &str, generation: u32) -> String {
    if generation <= 1 {
        format!("{kek_label}-sign")
    } else {
        format!("{kek_label}-sign-v{generation}")
    }
}

fn generation_of(kek_label: &str, label: &[u8]) -> Option<u32> {
    let rest = std::str::from_utf8(label)
        .ok()?
        .strip_prefix(kek_label)?
        .strip_prefix("-sign")?;
    if rest.is_empty() {
        return Some(1);
    }
    rest.strip_prefix("-v")?.parse().ok().filter(|g| *g >= 2)
}

/// Every object of `class` that is a generation of this KEK label's signing key, newest first.
fn find_all(
    session: &Session,
    kek_label: &str,
    class: ObjectClass,
) -> Result<Vec<(u32, ObjectHandle)>, Pkcs11Error> {
    let found = session
        .find_objects(&[Attribute::Class(class)])
        .map_err(|e| call_error(e, "the token could not be searched"))?;
    let mut out = Vec::new();
    for h in found {
        let attrs = session
            .get_attributes(h, &[AttributeType::Label])
            .map_err(|e| call_error(e, "the token did not return an object label"))?;
        for a in attrs {
            if let Attribute::Label(l) = a {
                if let Some(g) = generation_of(kek_label, &l) {
                    out.push((g, h));
                }
            }
        }
    }
    out.sort_by_key(|g| std::cmp::Reverse(g.0));
    Ok(out)
}

/// The newest signing key generation present (public or private), 0 when there is none.
pub(crate) fn newest_generation(session: &Session, kek_label: &str) -> Result<u32, Pkcs11Error> {
    let mut newest = 0;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        if let Some((g, _)) = find_all(session, kek_label, class)?.first() {
            newest = newest.max(*g);
        }
    }
    Ok(newest)
}

/// The current generation: the one whose private key exists (the newest, if several).
fn current(session: &Session, kek_label: &str) -> Result<Option<(u32, ObjectHandle)>, Pkcs11Error> {
    Ok(find_all(session, kek_label, ObjectClass::PRIVATE_KEY)?
        .first()
        .copied())
}

/// Generates generation `generation` of the key pair unless a private signing key exists;
/// returns whether it created one.
pub(crate) fn ensure(
    session: &Session,
    kek_label: &str,
    generation: u32,
) -> Result<bool, Pkcs11Error> {
    if current(session, kek_label)?.is_some() {
        return Ok(false);
    }
    let l = label(kek_label, generation).into_bytes();
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

/// Destroys every private signing key (used by `keys init --replace`). The public keys stay,
/// so that archives signed by a replaced generation still verify.
pub(crate) fn retire_private(session: &Session, kek_label: &str) -> Result<(), Pkcs11Error> {
    for (_, h) in find_all(session, kek_label, ObjectClass::PRIVATE_KEY)? {
        session
            .destroy_object(h)
            .map_err(|e| call_error(e, "the token refused to delete the old signing key"))?;
    }
    Ok(())
}

fn missing(kek_label: &str) -> Pkcs11Error {
    Pkcs11Error::Call {
        function: "C_FindObjects".into(),
        rv: format!("no signing key labelled \"{}\"", label(kek_label, 1)),
        hint: "run `offbox keys init` to create it",
    }
}

fn read_point(session: &Session, h: ObjectHandle) -> Result<Option<PublicKey>, Pkcs11Error> {
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
            return PublicKey::from_point(&point)
                .map(Some)
                .map_err(|_| Pkcs11Error::Call {
                    function: "C_GetAttributeValue".into(),
                    rv: "CKA_EC_POINT is not a P-256 point".into(),
                    hint: "recreate the signing key with `offbox keys init --replace --yes`",
                });
        }
    }
    Ok(None)
}

/// The current generation's verification key, read from the token's public key object.
pub fn public_key(session: &Session, kek_label: &str) -> Result<PublicKey, Pkcs11Error> {
    let (generation, _) = current(session, kek_label)?.ok_or_else(|| missing(kek_label))?;
    for (g, h) in find_all(session, kek_label, ObjectClass::PUBLIC_KEY)? {
        if g == generation {
            return read_point(session, h)?.ok_or_else(|| missing(kek_label));
        }
    }
    Err(missing(kek_label))
}

/// Every generation's verification key, newest first.
pub(crate) fn public_keys(
    session: &Session,
    kek_label: &str,
) -> Result<Vec<PublicKey>, Pkcs11Error> {
    let mut out = Vec::new();
    for (_, h) in find_all(session, kek_label, ObjectClass::PUBLIC_KEY)? {
        if let Some(k) = read_point(session, h)? {
            out.push(k);
        }
    }
    Ok(out)
}

/// Signs a SHA-256 digest with raw CKM_ECDSA: returns `r || s`.
pub fn sign_digest(
    session: &Session,
    kek_label: &str,
    digest: &[u8; 32],
) -> Result<[u8; 64], Pkcs11Error> {
    let (_, h) = current(session, kek_label)?.ok_or_else(|| missing(kek_label))?;
    let sig = session
        .sign(&Mechanism::Ecdsa, h, digest)
        .map_err(|e| call_error(e, "the token could not sign the archive"))?;
    sig.as_slice().try_into().map_err(|_| Pkcs11Error::Call {
        function: "C_Sign".into(),
        rv: format!("a {}-byte signature instead of 64", sig.len()),
        hint: "the token's ECDSA output is not raw r||s",
    })
}
