//! Writes the binary seed corpora of the fuzz targets (header, segments, trailer, share)
//! into fuzz/corpus/<target>/: the archives of the format vectors in docs/format.md, headers
//! with every slot kind, archives signed by the test key, and share files as
//! `offbox recovery init` writes them. fuzz/make-corpus.sh runs it and adds the text seeds.
//!
//! Run: `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (no nightly needed).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use offbox::format::schedule::ArchiveKeys;
use offbox::format::{ArchiveKind, Compression, Header, KeySlot};
use offbox::keys::recovery::share::split;
use offbox::keys::recovery::RecoverySecret;
use offbox::secret::Key32;
use offbox::stream::EncryptWriter;
use offbox_fuzz::{
    build_archive, dek, head_len, plaintext, public_key, signing_key, vector_header,
};

fn unhex(s: &str) -> Vec<u8> {
    data_encoding::HEXLOWER
        .decode(s.as_bytes())
        .expect("hex in docs/format.md")
}

/// The ```vector blocks of docs/format.md, with continued keys joined.
fn vectors(doc: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: Option<BTreeMap<String, String>> = None;
    for line in doc.lines() {
        if line.trim() == "```vector" {
            cur = Some(BTreeMap::new());
        } else if line.trim() == "```" {
            out.extend(cur.take());
        } else if let Some(v) = cur.as_mut() {
            if let Some((k, val)) = line.split_once(':') {
                v.entry(k.trim().to_string())
                    .and_modify(|e: &mut String| e.push_str(val.trim()))
                    .or_insert_with(|| val.trim().to_string());
            }
        }
    }
    out
}

/// The archive of a vector: given in full (`archive:`), or built from its header, plaintext
/// and trailer.
fn vector_archive(v: &BTreeMap<String, String>) -> Option<Vec<u8>> {
    if let Some(a) = v.get("archive") {
        return Some(unhex(a));
    }
    let encoded = unhex(v.get("header")?);
    let header = Header::decode_body(&encoded[12..]).expect("a vector header decodes");
    let dek = Key32::from_slice(&unhex(v.get("dek")?))?;
    let plain = match v.get("plaintext_ascii") {
        Some(t) => t.replace("\\n", "\n").into_bytes(),
        None => (0..v["plaintext_len"].parse::<usize>().ok()?)
            .map(|i| (i % 251) as u8)
            .collect(),
    };
    let mut w = EncryptWriter::new(Vec::new(), &header, &dek).ok()?;
    w.write_all(&plain).ok()?;
    let mut a = w.finish().ok()?.inner;
    a.extend(v.get("trailer").map(|t| unhex(t)).unwrap_or_default());
    Some(a)
}

/// Headers with every slot kind, compression and archive kind.
fn header_variants() -> Vec<Header> {
    let base = vector_header(false);
    let tpm = KeySlot::Tpm {
        key_version: 2,
        parent_name: vec![0x00, 0x0b, 0x11, 0x22],
        pcrs: vec![7],
        public: vec![0x01; 20],
        private: vec![0x02; 30],
    };
    let recovery = KeySlot::Recovery {
        key_id: [0x82; 8],
        ephemeral: [0x75; 32],
        wrapped: vec![0x2a; 48],
    };
    vec![
        Header {
            kind: ArchiveKind::Secrets,
            slots: vec![base.slots[0].clone(), recovery.clone()],
            ..base.clone()
        },
        Header {
            kind: ArchiveKind::Videos,
            compression: Compression::Zstd { level: 3 },
            slots: vec![tpm.clone()],
            ..base.clone()
        },
        Header {
            slots: vec![tpm, recovery],
            segment_size: 1 << 20,
            ..vector_header(true)
        },
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create the corpus directory");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("corpus"));
    let doc = fs::read_to_string(root.join("../docs/format.md")).expect("docs/format.md");

    // header: the vector archives and header bodies, then headers of every slot kind.
    let (h, s, t, sh) = (
        corpus.join("header"),
        corpus.join("segments"),
        corpus.join("trailer"),
        corpus.join("share"),
    );
    let mut archives = Vec::new();
    for v in vectors(&doc) {
        let name = v["name"].clone();
        if let Some(a) = vector_archive(&v) {
            write(&h, &format!("vector-{name}"), &a);
            write(
                &h,
                &format!("vector-{name}-body"),
                &a[12..head_len(&a) - 32],
            );
            archives.push((name, a));
        }
    }
    for (i, hv) in header_variants().iter().enumerate() {
        let enc = hv.encode().expect("variant encodes");
        let mac = ArchiveKeys::derive(&dek(), &hv.salt).header_mac(&enc);
        write(&h, &format!("variant-{i}-body"), &enc[12..]);
        write(&h, &format!("variant-{i}-head"), &cat(&[&enc, &mac]));
    }

    // segments: mode 1 (whole archive), mode 0 (body after the vector head), mode 2 (built).
    for (name, a) in &archives {
        write(
            &s,
            &format!("whole-{name}"),
            &cat(&[&[0x01, 0xff, 0x0f], a]),
        );
        write(
            &s,
            &format!("whole-{name}-short-reads"),
            &cat(&[&[0x21, 0x03, 0x07, 0x00], a]),
        );
        if !name.contains("signed") {
            write(
                &s,
                &format!("body-{name}"),
                &cat(&[&[0x00, 0xff, 0x0f], &a[head_len(a)..]]),
            );
        }
    }
    for (signed, len) in [(0u8, 0u16), (0, 14), (0, 4096), (0x80, 4097), (0x80, 10000)] {
        let [lo, hi] = len.to_le_bytes();
        write(
            &s,
            &format!("built-{signed}-{len}"),
            &[0x02 | signed, 0x00, 0x04, lo, hi, 0x61, 0x00],
        );
    }
    write(
        &s,
        "built-edited",
        &[
            0x82, 0x00, 0x04, 0x10, 0x27, 0x61, 0x02, 0x05, 0x01, 0x00, 0x00, 0x00, 0x20, 0x00,
            0x01,
        ],
    );

    // trailer: mode 0 (framer), 1 (public key files), 2 (signed archives), 3 (built, edited).
    write(
        &t,
        "framer-small",
        &cat(&[&[0x00, 0x35, 0x80, 1, 2, 3], &[0x5a; 300]]),
    );
    write(
        &t,
        "framer-4096",
        &cat(&[&[0x10, 0x01, 0x01, 0x00], &[0xa5; 9000]]),
    );
    let signed = build_archive(&vector_header(true), &plaintext(10000, 7));
    let sig = signed[signed.len() - 64..].to_vec();
    let pk = public_key();
    write(
        &t,
        "key-pem-and-signature",
        &cat(&[&[0x01, 0x01], pk.to_pem().as_bytes(), &sig]),
    );
    write(&t, "key-der", &cat(&[&[0x01, 0x00], &pk.spki_der()]));
    let _ = signing_key();
    for len in [0usize, 14, 10000] {
        let a = build_archive(&vector_header(true), &plaintext(len, 1));
        write(&t, &format!("signed-{len}"), &cat(&[&[0x02], &a]));
    }
    write(&t, "built-8193", &[0x03, 0x01, 0x20, 0x02, 0x00]);
    write(
        &t,
        "built-edited",
        &[0x03, 0x10, 0x27, 0x02, 0x01, 0x00, 0x10, 0x00, 0x04],
    );

    // share: share files as `offbox recovery init` writes them (3 of 5), a typed code, the
    // public key line; records; and split/combine round trips.
    let secret = RecoverySecret::from_key(Key32::from_slice(&[0x42; 32]).expect("32 bytes"));
    let shares = split(&secret, 5, 3, &[public_key()]);
    let files: Vec<String> = shares
        .iter()
        .map(|s| s.to_file_text().as_str().to_string())
        .collect();
    let public = secret.public().encode();
    write(&sh, "file-1-of-5", &cat(&[&[0x00], files[0].as_bytes()]));
    write(
        &sh,
        "three-files-and-public-key",
        &cat(&[
            &[0x00],
            files[0].as_bytes(),
            &[0xff],
            files[2].as_bytes(),
            &[0xff],
            files[4].as_bytes(),
            &[0xff],
            public.as_bytes(),
        ]),
    );
    write(
        &sh,
        "typed-code",
        &cat(&[
            &[0x00],
            shares[1].code().to_lowercase().replace('-', " ").as_bytes(),
        ]),
    );
    let code = shares[3].code().replace('-', "");
    let bin = data_encoding::BASE32_NOPAD
        .decode(code.as_bytes())
        .expect("own code");
    write(&sh, "record", &cat(&[&[0x01, 0x04], &bin[..44]]));
    write(
        &sh,
        "round-trip-3-of-5",
        &cat(&[&[0x02], &[0x42; 32], &[3, 0x81, 0x00, 4, 0, 2, 4, 2]]),
    );
    write(
        &sh,
        "round-trip-corrupt",
        &cat(&[&[0x02], &[0x17; 32], &[1, 0, 0x81, 3, 0, 1, 0]]),
    );
    write(
        &sh,
        "round-trip-tag-changed",
        &cat(&[&[0x02], &[0x29; 32], &[3, 0x81, 0x41, 4, 0, 1, 2, 3]]),
    );
    println!("seeds written to {}", corpus.display());
}
