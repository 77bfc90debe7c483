//! Fuzz target `share`: custodian share files and codes (`keys::recovery::share::Share::parse`,
//! with their signing-key lines), rebuilding the recovery key from them (`share::combine`),
//! checking the signing keys they vouch for (`signers::vouched`), and the recovery public
//! key (`RecoveryPublicKey::parse`). The first input byte picks a mode:
//! - 0: up to eight fuzzed texts (separated by 0xff bytes), each parsed as a share file and
//!   as a public key, then all accepted shares combined and their signing keys checked;
//! - 1: share records of 44 fuzzed bytes, sealed with a correct checksum and written as a
//!   code (groups, case and spacing chosen by the input), so that the fields behind the
//!   checksum get fuzzed: parse must accept exactly the possible index/threshold/count;
//! - 2: a fuzz-chosen key split into N share files (listing the test signing key or not) and
//!   a fuzz-chosen subset of them combined, perhaps with one code or one signing-keys tag
//!   changed: enough distinct untouched shares must give the key and the listed signing
//!   keys back, fewer must be refused, and a changed tag must be refused.
#![no_main]

use std::collections::BTreeSet;

use aws_lc_rs::digest;
use libfuzzer_sys::fuzz_target;
use offbox::keys::recovery::share::{combine, split, Share};
use offbox::keys::recovery::signers::{vouched, TAG_LINE};
use offbox::keys::recovery::{RecoveryPublicKey, RecoverySecret};
use offbox::secret::Key32;
use offbox_fuzz::{public_key, Input};

fn check_vouched(secret: &RecoverySecret, shares: &[(String, Share)]) {
    let _ = vouched(secret, shares.iter().map(|(w, s)| (w.as_str(), &s.signers)));
}

fn texts(input: &mut Input) {
    let mut shares = Vec::new();
    for (i, piece) in input.rest().split(|&b| b == 0xff).take(8).enumerate() {
        let text = String::from_utf8_lossy(piece);
        if let Ok(pk) = RecoveryPublicKey::parse(&text) {
            assert_eq!(RecoveryPublicKey::parse(&pk.encode()).ok(), Some(pk));
        }
        if let Ok(s) = Share::parse(&text, "fuzz") {
            let again =
                Share::parse(&s.to_file_text(), "again").expect("a share's own file parses");
            assert_eq!(again.code().as_str(), s.code().as_str());
            assert_eq!(again.signers.keys, s.signers.keys);
            assert_eq!(again.signers.tag, s.signers.tag);
            shares.push((format!("share {i}"), s));
        }
    }
    if let Ok(secret) = combine(&shares) {
        assert_eq!(secret.public().key_id(), shares[0].1.key_id);
        check_vouched(&secret, &shares);
    }
}

fn code_of(bin: &[u8], style: u8) -> String {
    let b32 = data_encoding::BASE32_NOPAD.encode(bin);
    let group = 1 + usize::from(style % 8);
    let sep = [" ", "-", "\n", "  -\t"][usize::from(style >> 3) % 4];
    let mut code = b32
        .as_bytes()
        .chunks(group)
        .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
        .collect::<Vec<_>>()
        .join(sep);
    if style & 0x20 != 0 {
        code = code.to_lowercase();
    }
    if style & 0x40 != 0 {
        code = format!("# a comment\nkey-id: 0\n\n{code}\n");
    }
    code
}

fn records(input: &mut Input) {
    let mut shares = Vec::new();
    while input.len() >= 45 {
        let style = input.byte();
        let mut bin = input.take(44).to_vec();
        let sum = digest::digest(&digest::SHA256, &bin);
        bin.extend_from_slice(&sum.as_ref()[..4]);
        let parsed = Share::parse(&code_of(&bin, style), "record");
        let (version, index, threshold, count) = (bin[0], bin[9], bin[10], bin[11]);
        let possible =
            version == 1 && index != 0 && threshold >= 2 && threshold <= count && index <= count;
        assert_eq!(
            parsed.is_ok(),
            possible,
            "v{version} {index}/{threshold}/{count}"
        );
        if let Ok(s) = parsed {
            assert_eq!((s.index, s.threshold, s.count), (index, threshold, count));
            assert_eq!(s.key_id[..], bin[1..9]);
            shares.push((format!("record {}", shares.len()), s));
        }
    }
    if let Ok(secret) = combine(&shares) {
        assert_eq!(secret.public().key_id(), shares[0].1.key_id);
    }
}

fn round_trip(input: &mut Input) {
    let key = input.take(32);
    let Some(key) = Key32::from_slice(key) else {
        return;
    };
    let secret = RecoverySecret::from_key(key);
    let count = 2 + input.byte() % 9;
    let knobs = input.byte();
    let threshold = 2 + knobs % (count - 1);
    let signing_keys = if knobs & 0x80 != 0 {
        vec![public_key()]
    } else {
        vec![]
    };
    let shares = split(&secret, count, threshold, &signing_keys);
    assert_eq!(shares.len(), usize::from(count));
    let files: Vec<_> = shares.iter().map(|s| s.to_file_text()).collect();
    let mut picked = Vec::new();
    let mut distinct = BTreeSet::new();
    let corrupt = input.byte();
    let mut tag_changed = false;
    for _ in 0..input.byte() % 12 {
        let i = usize::from(input.byte() % count);
        let mut text = files[i].as_str().to_string();
        let target = usize::from(corrupt & 0x3f) % files.len() == i;
        if corrupt & 0x80 != 0 && target {
            // Change one character of the code: the checksum must catch it.
            let at = text.len() - 2 - usize::from(corrupt) % 20;
            let c = if text.as_bytes()[at] == b'A' {
                "B"
            } else {
                "A"
            };
            text.replace_range(at..at + 1, c);
            if let Ok(s) = Share::parse(&text, "corrupt") {
                assert_eq!(
                    s.code().as_str(),
                    shares[i].code().as_str(),
                    "a changed code parsed as another share"
                );
            }
            continue;
        }
        if corrupt & 0x40 != 0 && target && !signing_keys.is_empty() {
            // Change one digit of the signing-keys tag: only the rebuilt key can tell.
            let at = text.find(TAG_LINE).expect("a tag line") + TAG_LINE.len() + 1;
            let c = if text.as_bytes()[at] == b'0' {
                "1"
            } else {
                "0"
            };
            text.replace_range(at..at + 1, c);
            tag_changed = true;
        }
        let s = Share::parse(&text, "file").expect("a share file parses");
        assert_eq!(s.signers.keys, signing_keys);
        distinct.insert(s.index);
        picked.push((format!("share {i}"), s));
    }
    match combine(&picked) {
        Ok(got) => {
            assert!(
                distinct.len() >= usize::from(threshold),
                "rebuilt from too few shares"
            );
            assert_eq!(got.expose(), secret.expose(), "rebuilt another key");
            let listed = vouched(&got, picked.iter().map(|(w, s)| (w.as_str(), &s.signers)));
            match listed {
                Ok(keys) => {
                    assert!(!tag_changed, "a changed signing-keys tag was accepted");
                    assert_eq!(keys, signing_keys);
                }
                Err(e) => assert!(tag_changed, "untouched shares' signing keys refused: {e}"),
            }
        }
        Err(e) => assert!(
            distinct.len() < usize::from(threshold),
            "enough shares refused: {e}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.byte() % 3 {
        0 => texts(&mut input),
        1 => records(&mut input),
        _ => round_trip(&mut input),
    }
});
