//! Test vectors of docs/format.md: the tests recompute every value from the inputs given
//! there and compare byte for byte, and decrypt the archives given there.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use offbox::format::header::hex;
use offbox::format::schedule::{hkdf32, ArchiveKeys};
use offbox::format::trailer::{message_v3, tail_segment, TrailerV3};
use offbox::format::{ArchiveKind, Chain, Compression, Header, KeySlot, SignerInfo};
use offbox::keys::recovery::{RecoveryIdentity, RecoveryRecipient, RecoverySecret};
use offbox::keys::{SlotContext, SlotIdentity, SlotRecipient};
use offbox::secret::Key32;
use offbox::stream::{ArchiveHead, DecryptReader, EncryptWriter, Finished};

fn unhex(s: &str) -> Vec<u8> {
    data_encoding::HEXLOWER.decode(s.as_bytes()).unwrap()
}

/// Parses the ```vector blocks of docs/format.md into maps.
fn vectors() -> BTreeMap<String, BTreeMap<String, String>> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/format.md")).unwrap();
    let mut out = BTreeMap::new();
    let mut cur: Option<BTreeMap<String, String>> = None;
    for line in doc.lines() {
        if line.trim() == "```vector" {
            cur = Some(BTreeMap::new());
        } else if line.trim() == "```" {
            if let Some(v) = cur.take() {
                out.insert(v["name"].clone(), v);
            }
        } else if let Some(v) = cur.as_mut() {
            let (k, val) = line.split_once(':').unwrap();
            v.entry(k.trim().to_string())
                .and_modify(|e: &mut String| e.push_str(val.trim()))
                .or_insert_with(|| val.trim().to_string());
        }
    }
    out
}

fn vector_header(v: &BTreeMap<String, String>) -> Header {
    Header {
        version: v.get("version").map_or(1, |x| x.parse().unwrap()),
        kind: match v.get("kind").map(String::as_str) {
            Some("videos") => ArchiveKind::Videos,
            _ => ArchiveKind::System,
        },
        created_unix: v["created_unix"].parse().unwrap(),
        appliance_id: v["appliance_id"].clone(),
        archive_id: unhex(&v["archive_id"]).try_into().unwrap(),
        compression: Compression::None,
        segment_size: v["segment_size"].parse().unwrap(),
        salt: unhex(&v["salt"]).try_into().unwrap(),
        nonce_prefix: unhex(&v["nonce_prefix"]).try_into().unwrap(),
        slots: vec![KeySlot::Pkcs11 {
            key_label: "offbox-kek".into(),
            key_id: b"offbox-kek-v1".to_vec(),
            key_version: 1,
            mechanism: 0x2109,
            wrapped: unhex(&v["slot_wrapped"]),
        }],
        signer: v.get("signer_key_id").map(|k| SignerInfo {
            key_id: unhex(k).try_into().unwrap(),
        }),
        chain: v.get("chain_base").map(|b| Chain {
            base: unhex(b).try_into().unwrap(),
            parent: v.get("chain_parent").map(|p| unhex(p).try_into().unwrap()),
            seq: v["chain_seq"].parse().unwrap(),
            depends_on: v
                .get("chain_depends_on")
                .map(|d| unhex(d).chunks(16).map(|c| c.try_into().unwrap()).collect())
                .unwrap_or_default(),
        }),
    }
}

fn plaintext(v: &BTreeMap<String, String>) -> Vec<u8> {
    match v.get("plaintext_ascii") {
        Some(t) => t.replace("\\n", "\n").into_bytes(),
        None => (0..v["plaintext_len"].parse::<usize>().unwrap())
            .map(|i| (i % 251) as u8)
            .collect(),
    }
}

fn build(v: &BTreeMap<String, String>) -> (Vec<u8>, Option<[u8; 32]>) {
    let (a, f) = build_full(v);
    (a, f.stream_digest)
}

/// The archive bytes (trailer from the vector) and what the writer handed back.
fn build_full(v: &BTreeMap<String, String>) -> (Vec<u8>, Finished<()>) {
    let dek = Key32::from_slice(&unhex(&v["dek"])).unwrap();
    let h = vector_header(v);
    let mut w = EncryptWriter::new(Vec::new(), &h, &dek).unwrap();
    let p = plaintext(v);
    let split = v.get("tail_start").map_or(p.len(), |t| t.parse().unwrap());
    w.write_all(&p[..split]).unwrap();
    if v.contains_key("tail_start") {
        w.mark_tail();
    }
    w.write_all(&p[split..]).unwrap();
    let f = w.finish().unwrap();
    let mut a = f.inner;
    if let Some(t) = v.get("trailer") {
        a.extend_from_slice(&unhex(t));
    }
    let rest = Finished {
        inner: (),
        bytes_in: f.bytes_in,
        bytes_out: f.bytes_out,
        stream_digest: f.stream_digest,
        header_digest: f.header_digest,
        tail: f.tail,
    };
    (a, rest)
}

#[test]
fn archive_vectors_match_byte_for_byte() {
    let all = vectors();
    assert!(all.len() >= 3, "docs/format.md lost its vectors");
    for (name, v) in all.iter().filter(|(_, v)| v.contains_key("dek")) {
        let dek = Key32::from_slice(&unhex(&v["dek"])).unwrap();
        let h = vector_header(v);
        let encoded = h.encode().unwrap();
        assert_eq!(hex(&encoded), v["header"], "{name}: header");
        assert_eq!(
            h.slot_binding().map(|b| hex(&b)),
            v.get("slot_binding").cloned(),
            "{name}: slot_binding"
        );
        let keys = ArchiveKeys::derive(&dek, &h.salt);
        assert_eq!(
            hex(&keys.header_mac(&encoded)),
            v["header_mac"],
            "{name}: header_mac"
        );
        let pk = hkdf32(&h.salt, dek.expose(), &[b"offbox v1 payload"]);
        assert_eq!(hex(pk.expose()), v["payload_key"], "{name}: payload_key");
        let (a, digest) = build(v);
        if let Some(full) = v.get("archive") {
            assert_eq!(&hex(&a), full, "{name}: archive");
        }
        let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &a);
        assert_eq!(
            hex(sha.as_ref()),
            v["archive_sha256"],
            "{name}: archive_sha256"
        );
        if let Some(d) = v.get("stream_digest") {
            assert_eq!(hex(&digest.unwrap()), *d, "{name}: stream_digest");
        }
        // And the reader opens it back.
        let mut cur = std::io::Cursor::new(&a[..]);
        let head = ArchiveHead::read_from(&mut cur).ok().unwrap();
        let mut r = DecryptReader::new(cur, head, &dek).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, plaintext(v), "{name}: plaintext");
    }
}

/// The version-3 vector: the chain in the header, the tail's start and digest, the trailer
/// fields and the signed message (docs/format.md §5); and the tail read on its own from its
/// first segment.
#[test]
fn chained_vector_tail_and_trailer() {
    let all = vectors();
    let v = &all["v3-chained"];
    let (a, f) = build_full(v);
    let h = vector_header(v);
    let (tail_start, tail_digest) = f.tail.unwrap();
    assert_eq!(tail_start.to_string(), v["tail_start"]);
    assert_eq!(hex(&tail_digest), v["tail_digest"], "tail_digest");
    assert_eq!(hex(&f.header_digest), v["header_digest"], "header_digest");
    let stream = f.stream_digest.unwrap();
    let msg = message_v3(&f.header_digest, &stream, tail_start, &tail_digest);
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &msg);
    assert_eq!(hex(sha.as_ref()), v["message_sha256"], "message_sha256");
    let trailer = TrailerV3::decode(&unhex(&v["trailer"])).unwrap();
    assert_eq!(trailer.stream_digest, stream);
    assert_eq!(trailer.tail_start, tail_start);
    assert_eq!(trailer.tail_digest, tail_digest);
    // The tail, from its segment's offset to the end of the final segment, hashes to the
    // tail digest, and decrypts on its own.
    let encoded = h.encode().unwrap();
    let (index, offset) = tail_segment(encoded.len(), h.segment_size, tail_start);
    assert_eq!(
        format!("{index} {offset}"),
        v["tail_segment"],
        "tail_segment"
    );
    let end = a.len() - 136;
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &a[offset as usize..end]);
    assert_eq!(sha.as_ref(), tail_digest);
    let dek = Key32::from_slice(&unhex(&v["dek"])).unwrap();
    let head = ArchiveHead::read_from(&mut std::io::Cursor::new(&a[..]))
        .ok()
        .unwrap();
    let mut r = DecryptReader::new_at(&a[offset as usize..], head, &dek, index).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    let p = plaintext(v);
    assert_eq!(out, p[(index * u64::from(h.segment_size)) as usize..]);
    assert_eq!(r.stream_digest().unwrap(), tail_digest);
}

#[test]
fn recovery_slot_vectors_open() {
    let all = vectors();
    for name in ["recovery-slot", "recovery-slot-v2"] {
        let v = &all[name];
        let secret =
            RecoverySecret::from_key(Key32::from_slice(&unhex(&v["recovery_secret"])).unwrap());
        assert_eq!(secret.public().encode(), v["recovery_public"]);
        let id: [u8; 16] = unhex(&v["archive_id"]).try_into().unwrap();
        let salt: [u8; 32] = unhex(&v["salt"]).try_into().unwrap();
        let binding: Option<[u8; 32]> = v.get("binding").map(|b| unhex(b).try_into().unwrap());
        let ctx = SlotContext {
            archive_id: &id,
            salt: &salt,
            kind: ArchiveKind::Secrets,
            binding,
        };
        let slot = KeySlot::Recovery {
            key_id: unhex(&v["key_id"]).try_into().unwrap(),
            ephemeral: unhex(&v["ephemeral"]).try_into().unwrap(),
            wrapped: unhex(&v["wrapped"]),
        };
        let dek = RecoveryIdentity(secret)
            .unwrap(&slot, &ctx)
            .ok()
            .flatten()
            .unwrap();
        assert_eq!(hex(dek.expose()), v["dek_out"], "{name}");
    }
}

/// Prints fresh vector blocks for docs/format.md: `cargo test --test vectors -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_vectors() {
    let base = |name: &str, extra: &[(&str, &str)]| {
        let mut v: BTreeMap<String, String> = [
            ("name", name),
            (
                "dek",
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            ),
            (
                "salt",
                "2021222324252627282928292a2b2c2d2e2f303132333435363738393a3b3c3d",
            ),
            ("archive_id", "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
            ("nonce_prefix", "b0b1b2b3b4b5b6"),
            ("created_unix", "1795435200"),
            ("appliance_id", "vector-appliance"),
            ("segment_size", "4096"),
            (
                "slot_wrapped",
                "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, val) in extra {
            v.insert(k.to_string(), val.to_string());
        }
        v
    };
    let cases = [
        base("single-segment", &[("plaintext_ascii", "hello, offbox\\n")]),
        base("empty", &[("plaintext_ascii", "")]),
        base(
            "three-segments-signed",
            &[
                ("plaintext_len", "10000"),
                ("signer_key_id", "c0c1c2c3c4c5c6c7"),
                ("trailer", &"ee".repeat(64)),
            ],
        ),
        base(
            "v2-signed",
            &[
                ("version", "2"),
                ("plaintext_ascii", "hello, offbox v2\\n"),
                ("signer_key_id", "c0c1c2c3c4c5c6c7"),
                ("trailer", &"ee".repeat(64)),
            ],
        ),
    ];
    for mut v in cases {
        let dek = Key32::from_slice(&unhex(&v["dek"])).unwrap();
        let h = vector_header(&v);
        let encoded = h.encode().unwrap();
        let keys = ArchiveKeys::derive(&dek, &h.salt);
        v.insert("header".into(), hex(&encoded));
        if let Some(b) = h.slot_binding() {
            v.insert("slot_binding".into(), hex(&b));
        }
        v.insert("header_mac".into(), hex(&keys.header_mac(&encoded)));
        v.insert(
            "payload_key".into(),
            hex(hkdf32(&h.salt, dek.expose(), &[b"offbox v1 payload"]).expose()),
        );
        let (a, digest) = build(&v);
        if a.len() < 400 {
            v.insert("archive".into(), hex(&a));
        }
        v.insert(
            "archive_sha256".into(),
            hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &a).as_ref()),
        );
        if let Some(d) = digest {
            v.insert("stream_digest".into(), hex(&d));
        }
        print_block(&v);
    }
    for binding in [None, Some([0x30u8; 32])] {
        let secret = RecoverySecret::from_key(Key32::from_slice(&[0x42; 32]).unwrap());
        let id = [0xa0u8; 16];
        let salt = [0x20u8; 32];
        let ctx = SlotContext {
            archive_id: &id,
            salt: &salt,
            kind: ArchiveKind::Secrets,
            binding,
        };
        let dek = Key32::from_slice(&[0x11; 32]).unwrap();
        let slot = RecoveryRecipient(secret.public()).wrap(&dek, &ctx).unwrap();
        let KeySlot::Recovery {
            key_id,
            ephemeral,
            wrapped,
        } = slot
        else {
            unreachable!()
        };
        let name = if binding.is_some() {
            "recovery-slot-v2"
        } else {
            "recovery-slot"
        };
        let mut v: BTreeMap<String, String> = [
            ("name", name.to_string()),
            ("recovery_secret", hex(&[0x42; 32])),
            ("recovery_public", secret.public().encode()),
            ("archive_id", hex(&id)),
            ("salt", hex(&salt)),
            ("kind", "secrets".into()),
            ("key_id", hex(&key_id)),
            ("ephemeral", hex(&ephemeral)),
            ("wrapped", hex(&wrapped)),
            ("dek_out", hex(dek.expose())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(b) = binding {
            v.insert("binding".into(), hex(&b));
        }
        print_block(&v);
    }
}

fn print_block(v: &BTreeMap<String, String>) {
    println!("```vector\nname: {}", v["name"]);
    for (k, val) in v.iter().filter(|(k, _)| *k != "name") {
        let mut rest = val.as_str();
        if rest.is_empty() {
            println!("{k}:");
        }
        while !rest.is_empty() {
            let (line, tail) = rest.split_at(rest.len().min(96));
            println!("{k}: {line}");
            rest = tail;
        }
    }
    println!("```\n");
}
