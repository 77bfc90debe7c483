//! Key-encryption key objects in the token: generating them and finding their versions.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::error::{call_error, Pkcs11Error};

/// CKA_ID of version `version` of the KEK labelled `label`: `<label>-v<version>`.
pub(crate) fn id_for(label: &str, version: u32) -> Vec<u8> {
    format!("{label}-v{version}").into_bytes()
}

fn version_of(label: &str, id: &[u8]) -> Option<u32> {
    let id = std::str::from_utf8(id).ok()?;
    id.strip_prefix(label)?.strip_prefix("-v")?.parse().ok()
}

/// The KEK versions in the token, oldest first, with their object handles.
pub fn list(session: &Session, label: &str) -> Result<Vec<(u32, ObjectHandle)>, Pkcs11Error> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| call_error(e, "the token could not be searched"))?;
    let mut out = Vec::new();
    for h in handles {
        let attrs = session
            .get_attributes(h, &[AttributeType::Id])
            .map_err(|e| call_error(e, "the token could not be searched"))?;
        for a in attrs {
            if let Attribute::Id(id) = a {
                if let Some(v) = version_of(label, &id) {
                    out.push((v, h));
                }
            }
        }
    }
    out.sort_by_key(|(v, _)| *v);
    Ok(out)
}

/// Generates version `version` of the KEK inside the token: AES-256, non-extractable.
pub(crate) fn generate(
    session: &Session,
    label: &str,
    version: u32,
) -> Result<ObjectHandle, Pkcs11Error> {
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id_for(label, version)),
            ],
        )
        .map_err(|e| {
            call_error(
                e,
                "the token could not generate the key; check free token space",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_version() {
        assert_eq!(id_for("offbox-kek", 3), b"offbox-kek-v3");
        assert_eq!(version_of("offbox-kek", b"offbox-kek-v12"), Some(12));
        assert_eq!(version_of("offbox-kek", b"offbox-kek-vx"), None);
        assert_eq!(version_of("offbox-kek", b"other-v1"), None);
    }
}
