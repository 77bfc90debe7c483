//! TPM object templates and the byte formats around them: key templates, the PolicyPCR
//! digest, TPM2B marshalling of slot blobs, and the SubjectPublicKeyInfo of the signing key.
//! Pure functions; no TPM command is sent from here.

use aws_lc_rs::digest::{digest, SHA256};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::PropertyTag;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{
    Digest, EccParameter, EccPoint, EccScheme, HashScheme, KeyedHashScheme, PcrSelectSize,
    PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Private, Public, PublicBuffer,
    PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters,
    SymmetricDefinitionObject, TaggedTpmPropertyList,
};
use tss_esapi::traits::{Marshall, UnMarshall};

/// TPM_CC_PolicyPCR, part of the policy digest.
const TPM_CC_POLICY_PCR: u32 = 0x0000_017F;
/// TPM_ALG_SHA256.
const TPM_ALG_SHA256: u16 = 0x000B;
/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, BIT STRING of 66).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The SHA-256 bank selection of `pcrs` (sizeofSelect 3, as the policy digest assumes).
pub(super) fn pcr_selection(pcrs: &[u8]) -> tss_esapi::Result<PcrSelectionList> {
    let slots = pcrs
        .iter()
        .map(|&p| PcrSlot::try_from(1u32 << p))
        .collect::<tss_esapi::Result<Vec<_>>>()?;
    PcrSelectionListBuilder::new()
        .with_size_of_select(PcrSelectSize::ThreeOctets)
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
}

/// The policy digest after TPM2_PolicyPCR(SHA-256 bank, `pcrs` ascending) from a fresh
/// session, given the PCR values in the same order: what a trial session would return.
pub(super) fn policy_pcr_digest(pcrs: &[u8], values: &[&[u8]]) -> [u8; 32] {
    let pcr_digest = digest(&SHA256, &values.concat());
    let mut select = [0u8; 3];
    for &p in pcrs {
        select[usize::from(p / 8)] |= 1 << (p % 8);
    }
    let mut msg = vec![0u8; 32]; // the session's policyDigest starts as zeros
    msg.extend_from_slice(&TPM_CC_POLICY_PCR.to_be_bytes());
    msg.extend_from_slice(&1u32.to_be_bytes()); // TPML_PCR_SELECTION.count
    msg.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    msg.push(3); // sizeofSelect
    msg.extend_from_slice(&select);
    msg.extend_from_slice(pcr_digest.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &msg).as_ref());
    out
}

/// Storage primary for key version `version`; `unique.x` makes each version a different key.
pub(super) fn kek_template(version: u32) -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true);
    let params = PublicEccParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        EccCurve::NistP256,
    );
    ecc_primary(attrs, params, &format!("offbox kek v{version}"))
}

/// Unrestricted ECDSA-SHA256 P-256 signing primary.
pub(super) fn signing_template() -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_sign_encrypt(true);
    let params = PublicEccParametersBuilder::new_unrestricted_signing_key(
        EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
        EccCurve::NistP256,
    );
    ecc_primary(attrs, params, "offbox archive signing v1")
}

fn ecc_primary(
    attrs: ObjectAttributesBuilder,
    params: PublicEccParametersBuilder,
    label: &str,
) -> tss_esapi::Result<Public> {
    let x = EccParameter::try_from(digest(&SHA256, label.as_bytes()).as_ref().to_vec())?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs.build()?)
        .with_ecc_parameters(params.build()?)
        .with_ecc_unique_identifier(EccPoint::new(x, EccParameter::default()))
        .build()
}

/// Sealed-data object. With a policy, `userWithAuth` is clear: only a policy session unseals.
pub(super) fn sealed_template(policy: Option<[u8; 32]>) -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_user_with_auth(policy.is_none())
        .with_admin_with_policy(policy.is_some())
        .build()?;
    let auth_policy = match policy {
        Some(p) => Digest::try_from(p.to_vec())?,
        None => Digest::default(),
    };
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_auth_policy(auth_policy)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// TPM2B_PUBLIC bytes of `public`.
pub(super) fn public_to_tpm2b(public: Public) -> tss_esapi::Result<Vec<u8>> {
    PublicBuffer::try_from(public)?.marshall()
}

/// A sealed-data object's public area from canonical TPM2B_PUBLIC bytes.
pub(super) fn sealed_public_from_tpm2b(bytes: &[u8]) -> Option<Public> {
    let buffer = PublicBuffer::unmarshall(bytes).ok()?;
    if buffer.marshall().ok()? != bytes {
        return None; // trailing or non-canonical bytes
    }
    match Public::try_from(buffer).ok()? {
        p @ Public::KeyedHash { .. } => Some(p),
        _ => None,
    }
}

/// TPM2B_PRIVATE bytes: big-endian u16 size, then the blob.
pub(super) fn private_to_tpm2b(private: &Private) -> Vec<u8> {
    let blob = private.value();
    let mut out = Vec::with_capacity(2 + blob.len());
    out.extend_from_slice(&(blob.len() as u16).to_be_bytes());
    out.extend_from_slice(blob);
    out
}

/// The blob of exact TPM2B_PRIVATE bytes.
pub(super) fn private_from_tpm2b(bytes: &[u8]) -> Option<Private> {
    match bytes {
        [hi, lo, blob @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == blob.len() => {
            Private::try_from(blob.to_vec()).ok()
        }
        _ => None,
    }
}

/// A P-256 SubjectPublicKeyInfo (DER) from the TPM's affine coordinates.
pub(super) fn p256_spki_der(x: &[u8], y: &[u8]) -> Option<Vec<u8>> {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.push(0x04);
    der.extend_from_slice(&left_pad32(x)?);
    der.extend_from_slice(&left_pad32(y)?);
    Some(der)
}

/// A big-endian integer as exactly 32 bytes, or None if it does not fit.
pub(super) fn left_pad32(v: &[u8]) -> Option<[u8; 32]> {
    let v = &v[v.iter().take_while(|&&b| b == 0).count()..];
    let mut out = [0u8; 32];
    out.get_mut(32usize.checked_sub(v.len())?..)?
        .copy_from_slice(v);
    Some(out)
}

/// "TPM 2.0 IBM SW TPM, firmware 8217.4131.22.13878" from the fixed TPM properties.
pub(super) fn describe(props: &TaggedTpmPropertyList) -> String {
    let get = |tag| props.find(tag).map(|p| p.value()).unwrap_or(0);
    let text = |tags: &[PropertyTag]| {
        let bytes: Vec<u8> = tags.iter().flat_map(|&t| get(t).to_be_bytes()).collect();
        let s: String = bytes
            .into_iter()
            .filter(|b| b.is_ascii_graphic() || *b == b' ')
            .map(char::from)
            .collect();
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let vendor = text(&[
        PropertyTag::VendorString1,
        PropertyTag::VendorString2,
        PropertyTag::VendorString3,
        PropertyTag::VendorString4,
    ]);
    let (fw1, fw2) = (
        get(PropertyTag::FirmwareVersion1),
        get(PropertyTag::FirmwareVersion2),
    );
    format!(
        "TPM 2.0 {} {vendor}, firmware {}.{}.{}.{}",
        text(&[PropertyTag::Manufacturer]),
        fw1 >> 16,
        fw1 & 0xFFFF,
        fw2 >> 16,
        fw2 & 0xFFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn policy_digest_matches_tpm_trial_sessions() {
        // Expected values from `tpm2_createpolicy --policy-pcr -l sha256:... -f values` (swtpm).
        assert_eq!(
            hex(&policy_pcr_digest(&[16], &[&[0; 32]])),
            "bff2d58e9813f97cefc14f72ad8133bc7092d652b7c877959254af140c841f36"
        );
        assert_eq!(
            hex(&policy_pcr_digest(&[16, 23], &[&[0; 32], &[0xff; 32]])),
            "f713365bc02fa7e7e91b3ec4731605fe78a2f530a95e9db0f5beaf77c931f3ce"
        );
    }

    #[test]
    fn left_pad() {
        assert_eq!(left_pad32(&[1]).map(|a| a[31]), Some(1));
        let mut long = vec![0u8; 2];
        long.extend_from_slice(&[7; 32]);
        assert_eq!(left_pad32(&long), Some([7; 32]));
        assert_eq!(left_pad32(&[1; 33]), None);
        assert_eq!(left_pad32(&[]), Some([0; 32]));
    }

    #[test]
    fn blobs_round_trip_and_reject_garbage() {
        let p = sealed_template(Some([3; 32])).unwrap();
        let bytes = public_to_tpm2b(p.clone()).unwrap();
        assert_eq!(sealed_public_from_tpm2b(&bytes), Some(p));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(sealed_public_from_tpm2b(&trailing), None);
        assert_eq!(sealed_public_from_tpm2b(&bytes[..bytes.len() - 1]), None);
        let kek = public_to_tpm2b(kek_template(1).unwrap()).unwrap();
        assert_eq!(sealed_public_from_tpm2b(&kek), None);

        let private = Private::try_from(vec![9u8; 40]).unwrap();
        let bytes = private_to_tpm2b(&private);
        assert_eq!(private_from_tpm2b(&bytes).unwrap().value(), private.value());
        assert!(private_from_tpm2b(&bytes[..41]).is_none());
        assert!(private_from_tpm2b(&[0]).is_none());
    }

    #[test]
    fn versions_differ() {
        assert_ne!(kek_template(1).unwrap(), kek_template(2).unwrap());
        assert_eq!(kek_template(7).unwrap(), kek_template(7).unwrap());
    }
}
