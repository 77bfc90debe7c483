//! Custodian shares of the recovery private key: splitting, encoding, checking, combining.
//!
//! A share's binary form is `version (1) || key id (8) || index (1) || threshold (1) ||
//! count (1) || y (32) || checksum (4)`, where the checksum is the first 4 bytes of SHA-256
//! of everything before it. It is written as base32 (RFC 4648, no padding) in groups of five
//! characters, which can be printed, read aloud and typed back; case, spaces and dashes are
//! ignored when reading. Shamir's scheme over GF(256) comes from the `blahaj` crate.

use std::collections::BTreeMap;

use aws_lc_rs::digest;
use blahaj::Sharks;
use zeroize::Zeroizing;

use super::signers::{self, Listed};
use super::{RecoveryError, RecoverySecret};
use crate::format::header::hex;
use crate::format::signature::PublicKey;
use crate::secret::Key32;

const SHARE_VERSION: u8 = 1;
const BIN_LEN: usize = 1 + 8 + 3 + 32 + 4;

/// One custodian's share. Secret: no Debug, no Clone.
pub struct Share {
    /// Recovery key id the share belongs to.
    pub key_id: [u8; 8],
    /// Share index, 1..=count.
    pub index: u8,
    /// Shares needed (M).
    pub threshold: u8,
    /// Shares made (N).
    pub count: u8,
    y: Zeroizing<Vec<u8>>,
    /// The appliance signing keys the ceremony recorded, with their tag (share files only).
    pub signers: Listed,
}

impl Share {
    /// The typable code: base32 in dash-separated groups of five.
    pub fn code(&self) -> Zeroizing<String> {
        let mut bin = Zeroizing::new(Vec::with_capacity(BIN_LEN));
        bin.push(SHARE_VERSION);
        bin.extend_from_slice(&self.key_id);
        bin.extend_from_slice(&[self.index, self.threshold, self.count]);
        bin.extend_from_slice(&self.y);
        let sum = digest::digest(&digest::SHA256, &bin);
        bin.extend_from_slice(&sum.as_ref()[..4]);
        let b32 = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&bin));
        let groups: Vec<&str> = b32
            .as_bytes()
            .chunks(5)
            .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
            .collect();
        Zeroizing::new(groups.join("-"))
    }

    /// The share file a custodian keeps: instructions, metadata, then the code.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# offbox recovery share. SECRET: keep it offline, in a sealed envelope or a safe.\n\
             # {m} of the {n} custodians together can open every offbox archive of key {id}.\n\
             # Check it at each drill: offbox recovery verify-shares --share FILE ...\n\
             # The signing-key lines name the appliance keys whose archives break the glass trusts.\n\
             key-id: {id}\n\
             share: {i} of {n}\n\
             threshold: {m}\n\
             format: {v}\n\
             {signers}\
             \n\
             {code}\n",
            id = hex(&self.key_id),
            i = self.index,
            n = self.count,
            m = self.threshold,
            v = SHARE_VERSION,
            code = self.code().as_str(),
            signers = signers::lines(&self.signers.keys, &self.signers.tag.unwrap_or_default()),
        ))
    }

    /// Parses a share file or a typed code. `which` names the share in errors.
    pub fn parse(text: &str, which: &str) -> Result<Share, RecoveryError> {
        let bad = |detail: &str| RecoveryError::BadShare {
            which: which.to_string(),
            detail: detail.to_string(),
        };
        let mut code = Zeroizing::new(String::new());
        let mut listed = Listed::default();
        for line in text.lines() {
            let line = line.trim();
            if listed.read_line(line).map_err(bad)? {
                continue;
            }
            if line.is_empty() || line.starts_with('#') || line.contains(':') {
                continue;
            }
            code.extend(
                line.chars()
                    .filter(|c| !c.is_whitespace() && *c != '-')
                    .map(|c| c.to_ascii_uppercase()),
            );
        }
        if code.is_empty() {
            return Err(bad("no share code found"));
        }
        let bin = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(code.as_bytes())
                .map_err(|_| {
                    bad("it contains characters that are not base32, or has a wrong length")
                })?,
        );
        if bin.len() != BIN_LEN {
            return Err(bad(&format!(
                "{} bytes instead of {BIN_LEN}: a group is missing or extra",
                bin.len()
            )));
        }
        let (body, sum) = bin.split_at(BIN_LEN - 4);
        if digest::digest(&digest::SHA256, body).as_ref()[..4] != *sum {
            return Err(bad("checksum mismatch"));
        }
        if body[0] != SHARE_VERSION {
            return Err(bad(&format!("share format {} is not supported", body[0])));
        }
        let share = Share {
            key_id: body[1..9].try_into().expect("8 bytes"),
            index: body[9],
            threshold: body[10],
            count: body[11],
            y: Zeroizing::new(body[12..44].to_vec()),
            signers: listed,
        };
        share.signers.check_shape().map_err(bad)?;
        if share.index == 0
            || share.threshold < 2
            || share.threshold > share.count
            || share.index > share.count
        {
            return Err(bad("its index, threshold or count is impossible"));
        }
        Ok(share)
    }
}

/// Checks M-of-N ceremony parameters.
pub(crate) fn check_parameters(count: u32, threshold: u32) -> Result<(u8, u8), RecoveryError> {
    if threshold < 2 {
        return Err(RecoveryError::BadParameters(format!(
            "--threshold {threshold} is too low: with fewer than 2 shares needed, any single custodian could open every archive; use 2 or more"
        )));
    }
    if threshold > count {
        return Err(RecoveryError::BadParameters(format!(
            "--threshold {threshold} is more than --shares {count}: the key could never be rebuilt; use a threshold of at most {count}"
        )));
    }
    if count > 255 {
        return Err(RecoveryError::BadParameters(format!(
            "--shares {count} is more than the 255 allowed"
        )));
    }
    Ok((count as u8, threshold as u8))
}

/// Splits the recovery private key into `count` shares, any `threshold` of which rebuild it.
/// Every share records `signers`, the appliance signing keys, under a tag only the recovery
/// key can make.
pub fn split(
    secret: &RecoverySecret,
    count: u8,
    threshold: u8,
    signing_keys: &[PublicKey],
) -> Vec<Share> {
    let key_id = secret.public().key_id();
    let tag = (!signing_keys.is_empty()).then(|| signers::tag(secret, signing_keys));
    Sharks(threshold)
        .dealer(secret.expose())
        .take(count as usize)
        .map(|s| {
            let bytes = Zeroizing::new(Vec::from(&s));
            Share {
                key_id,
                index: bytes[0],
                threshold,
                count,
                y: Zeroizing::new(bytes[1..].to_vec()),
                signers: Listed {
                    keys: signing_keys.to_vec(),
                    tag,
                },
            }
        })
        .collect()
}

/// Rebuilds the recovery private key from shares, checking that they belong together, that
/// there are enough, and that the result matches their key id.
pub fn combine(shares: &[(String, Share)]) -> Result<RecoverySecret, RecoveryError> {
    let Some((_, first)) = shares.first() else {
        return Err(RecoveryError::NoShares);
    };
    let mut distinct: BTreeMap<u8, &Share> = BTreeMap::new();
    for (which, s) in shares {
        if s.key_id == first.key_id && (s.threshold != first.threshold || s.count != first.count) {
            return Err(RecoveryError::ThresholdMismatch {
                which: which.clone(),
                found: format!("{} of {}", s.threshold, s.count),
                first: shares[0].0.clone(),
                expected: format!("{} of {}", first.threshold, first.count),
            });
        }
        if s.key_id != first.key_id {
            return Err(RecoveryError::MixedShares {
                which: which.clone(),
                found: hex(&s.key_id),
                expected: hex(&first.key_id),
            });
        }
        if let Some(prev) = distinct.get(&s.index) {
            if *prev.y != *s.y {
                return Err(RecoveryError::BadShare {
                    which: which.clone(),
                    detail: format!(
                        "it has index {} like another share, with other content",
                        s.index
                    ),
                });
            }
        }
        distinct.insert(s.index, s);
    }
    if distinct.len() < first.threshold as usize {
        return Err(RecoveryError::TooFewShares {
            given: distinct.len(),
            threshold: first.threshold,
            key_id: hex(&first.key_id),
        });
    }
    let parsed: Vec<blahaj::Share> = distinct
        .values()
        .take(first.threshold as usize)
        .map(|s| {
            let mut bytes = Zeroizing::new(vec![s.index]);
            bytes.extend_from_slice(&s.y);
            blahaj::Share::try_from(bytes.as_slice()).expect("a 33-byte share parses")
        })
        .collect();
    let secret = Zeroizing::new(Sharks(first.threshold).recover(&parsed).map_err(|e| {
        RecoveryError::BadShare {
            which: "set".into(),
            detail: e.to_string(),
        }
    })?);
    let key = Key32::from_slice(&secret).ok_or(RecoveryError::Mismatch {
        key_id: hex(&first.key_id),
    })?;
    let secret = RecoverySecret::from_key(key);
    if secret.public().key_id() != first.key_id {
        return Err(RecoveryError::Mismatch {
            key_id: hex(&first.key_id),
        });
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(shares: Vec<Share>) -> Vec<(String, Share)> {
        shares
            .into_iter()
            .map(|s| (format!("#{}", s.index), s))
            .collect()
    }

    #[test]
    fn any_three_of_five_rebuild_the_key() {
        let secret = RecoverySecret::generate();
        let shares = split(&secret, 5, 3, &[]);
        let texts: Vec<_> = shares.iter().map(|s| s.to_file_text()).collect();
        for subset in [[0, 1, 2], [0, 2, 4], [1, 3, 4], [4, 3, 2]] {
            let picked: Vec<_> = subset
                .iter()
                .map(|&i| (format!("f{i}"), Share::parse(&texts[i], "f").unwrap()))
                .collect();
            assert_eq!(combine(&picked).unwrap().expose(), secret.expose());
        }
    }

    #[test]
    fn two_of_three_needed_is_an_error() {
        let shares = named(split(&RecoverySecret::generate(), 5, 3, &[]));
        let two: Vec<_> = shares.into_iter().take(2).collect();
        assert!(matches!(
            combine(&two),
            Err(RecoveryError::TooFewShares {
                given: 2,
                threshold: 3,
                ..
            })
        ));
    }

    #[test]
    fn a_typo_is_caught_by_the_checksum() {
        let s = split(&RecoverySecret::generate(), 3, 2, &[]).remove(0);
        let code = s.code();
        let mut typo: Vec<char> = code.chars().collect();
        typo[7] = if typo[7] == 'A' { 'B' } else { 'A' };
        let typo: String = typo.into_iter().collect();
        let e = Share::parse(&typo, "share 1").err().unwrap();
        assert_eq!(e.to_string(), "share share 1 is damaged or mistyped (checksum mismatch); check it character by character against the custodian's copy");
        // Lower case, spaces and missing dashes are fine.
        let relaxed = code.replace('-', " ").to_lowercase();
        assert_eq!(Share::parse(&relaxed, "x").unwrap().index, s.index);
    }

    #[test]
    fn shares_of_two_ceremonies_do_not_mix() {
        let a = split(&RecoverySecret::generate(), 3, 2, &[]);
        let b = split(&RecoverySecret::generate(), 3, 2, &[]);
        let mixed = vec![
            ("a1".to_string(), Share::parse(&a[0].code(), "a1").unwrap()),
            ("b2".to_string(), Share::parse(&b[1].code(), "b2").unwrap()),
        ];
        assert!(matches!(
            combine(&mixed),
            Err(RecoveryError::MixedShares { .. })
        ));
    }

    #[test]
    fn a_threshold_mismatch_shows_both_values() {
        let mut shares = named(split(&RecoverySecret::generate(), 5, 3, &[]));
        let (_, s1) = &shares[1];
        let altered = Share {
            key_id: s1.key_id,
            index: s1.index,
            threshold: 2,
            count: s1.count,
            y: Zeroizing::new(s1.y.to_vec()),
            signers: Listed::default(),
        };
        shares[1] = ("b.txt".to_string(), altered);
        assert_eq!(
            combine(&shares).err().unwrap().to_string(),
            "share b.txt says 2 of 5 shares are needed, but share #1 says 3 of 5: one of them was altered or mistyped; check both against the custodians' copies"
        );
    }

    #[test]
    fn signing_keys_round_trip_through_the_file_and_are_vouched_for() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let pk = PublicKey::from_point(kp.public_key().as_ref()).unwrap();
        let secret = RecoverySecret::generate();
        let shares = split(&secret, 3, 2, std::slice::from_ref(&pk));
        let parsed: Vec<_> = shares
            .iter()
            .map(|s| {
                (
                    "f".to_string(),
                    Share::parse(&s.to_file_text(), "f").unwrap(),
                )
            })
            .collect();
        assert_eq!(parsed[0].1.signers.keys, vec![pk.clone()]);
        let rebuilt = combine(&parsed).unwrap();
        let vouched = signers::vouched(
            &rebuilt,
            parsed.iter().map(|(w, s)| (w.as_str(), &s.signers)),
        );
        assert_eq!(vouched.unwrap(), vec![pk]);
        // Under another recovery key the tag does not verify.
        let other = RecoverySecret::generate();
        let e = signers::vouched(&other, parsed.iter().map(|(w, s)| (w.as_str(), &s.signers)))
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("signing-key lines were changed"),
            "{e}"
        );
        // A file with key lines but no tag is damaged.
        let text = shares[0].to_file_text();
        let no_tag: String = text
            .lines()
            .filter(|l| !l.starts_with("signing-keys-tag:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = Share::parse(&no_tag, "g").err().unwrap();
        assert!(e.to_string().contains("no signing-keys-tag line"), "{e}");
    }

    #[test]
    fn parameters() {
        assert!(check_parameters(5, 1).is_err());
        assert!(check_parameters(3, 4).is_err());
        assert_eq!(check_parameters(5, 3).unwrap(), (5, 3));
    }
}
