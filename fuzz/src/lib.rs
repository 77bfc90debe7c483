//! Shared pieces of the offbox fuzz targets (fuzz_targets/*.rs): the fixed test keys, the
//! header of the format vectors, a cursor over the fuzz input, a reader that returns short
//! reads, an archive builder and the edits that tamper with a built archive.
//!
//! Everything here is deterministic for a given input (ECDSA signatures are randomized, but
//! whether they verify is not), so that a crash input replays.

use std::io::{self, Read, Write};
use std::sync::OnceLock;

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use offbox::format::signature::PublicKey;
use offbox::format::{ArchiveKind, Compression, Header, KeySlot, SignerInfo, TAG_LEN, VERSION};
use offbox::jobs::signature::Trust;
use offbox::secret::Dek;
use offbox::stream::{signed_message, ArchiveHead, DecryptReader, EncryptWriter};

/// The data key of the format vectors in docs/format.md: bytes 0, 1, ..., 31.
pub fn dek() -> Dek {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    Dek::from_bytes(&mut k)
}

/// A P-256 key made for these targets only (SEC1 DER); it protects nothing.
const TEST_SIGNING_KEY: &str = "3077020101042037ac3f98edaa09e1fe3634c822bddf289025fd123fcd7778eb62b198d360c364a00a06082a8648ce3d030107a1440342000457690eded1ac203ff9da5e33360671c669c3773141d474426ace2df883d5dc60ffbc2860f52ce091a9f0c3980366cff40926d706c7d6cc6e5478ca12f36b4a02";

/// The test signing key pair.
pub fn signing_key() -> &'static EcdsaKeyPair {
    static KEY: OnceLock<EcdsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        let der = data_encoding::HEXLOWER
            .decode(TEST_SIGNING_KEY.as_bytes())
            .expect("hex");
        EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .expect("the test signing key parses")
    })
}

/// The public half of [`signing_key`].
pub fn public_key() -> PublicKey {
    PublicKey::from_point(signing_key().public_key().as_ref()).expect("a P-256 point")
}

/// Trust in the test key alone, as `--public-key` of its PEM would give.
pub fn trust() -> Trust {
    let mut t = Trust::new();
    t.add(public_key(), "the fuzz test key");
    t
}

/// Smallest segment size a header accepts; small segments make multi-segment archives short.
pub const SEGMENT: u32 = offbox::format::MIN_SEGMENT_SIZE;

/// The salt of the format vectors (docs/format.md §8), as printed there.
pub const VECTOR_SALT: [u8; 32] = [
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d,
    0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d,
];

/// The header of the format vectors (docs/format.md §8): unsigned, it is exactly their
/// header; signed, it names the test key as signer.
pub fn vector_header(signed: bool) -> Header {
    let seq = |start: u8| move |i: usize| start + i as u8;
    Header {
        version: VERSION,
        kind: ArchiveKind::System,
        created_unix: 1_795_435_200,
        appliance_id: "vector-appliance".into(),
        archive_id: std::array::from_fn(seq(0xa0)),
        compression: Compression::None,
        segment_size: SEGMENT,
        salt: VECTOR_SALT,
        nonce_prefix: std::array::from_fn(seq(0xb0)),
        slots: vec![KeySlot::Pkcs11 {
            key_label: "offbox-kek".into(),
            key_id: b"offbox-kek-v1".to_vec(),
            key_version: 1,
            mechanism: 0x2109,
            wrapped: vec![0xa5; 40],
        }],
        signer: signed.then(|| SignerInfo {
            key_id: public_key().key_id(),
        }),
        chain: None,
    }
}

/// Encrypts `plaintext` under [`dek`]; a signed header gets a real signature by the test key.
pub fn build_archive(header: &Header, plaintext: &[u8]) -> Vec<u8> {
    let mut w = EncryptWriter::new(Vec::new(), header, &dek()).expect("header encodes");
    w.write_all(plaintext).expect("writing to memory");
    let f = w.finish().expect("writing to memory");
    let mut out = f.inner;
    if let Some(digest) = f.stream_digest {
        let sig = signing_key()
            .sign(
                &aws_lc_rs::rand::SystemRandom::new(),
                &signed_message(&digest),
            )
            .expect("signing");
        out.extend_from_slice(sig.as_ref());
    }
    out
}

/// A plaintext of `len` bytes made from a seed: cheap, and different per segment.
pub fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// Length of the header block (prefix, header, MAC) at the start of `archive`.
pub fn head_len(archive: &[u8]) -> usize {
    let len = u32::from_le_bytes(archive[8..12].try_into().expect("4 bytes")) as usize;
    12 + len + offbox::format::HEADER_MAC_LEN
}

/// Reads the fuzz input front to back; past the end every read gives zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps the input.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// One byte.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }

    /// Bytes left.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A reader over a byte slice that returns short reads of the lengths in `steps` (cycled),
/// and now and then an `Interrupted` error, as pipes and sockets do.
pub struct Chunked<'a> {
    data: &'a [u8],
    steps: Vec<usize>,
    at: usize,
    interrupted: bool,
}

impl<'a> Chunked<'a> {
    /// `pattern` bytes give the read lengths (times 67); 0 stands for one `Interrupted`
    /// error, after which that read is served in full. An empty pattern reads as much as
    /// asked.
    pub fn new(data: &'a [u8], pattern: &[u8]) -> Self {
        Chunked {
            data,
            steps: pattern.iter().map(|&b| b as usize * 67).collect(),
            at: 0,
            interrupted: false,
        }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = buf.len();
        if !self.steps.is_empty() {
            let step = self.steps[self.at % self.steps.len()];
            self.at += 1;
            if step == 0 {
                // Interrupt every other call at most, so that a retrying caller progresses.
                self.interrupted = !self.interrupted;
                if self.interrupted && !buf.is_empty() {
                    return Err(io::ErrorKind::Interrupted.into());
                }
            } else {
                n = n.min(step);
            }
        }
        n = n.min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Reads an archive with [`dek`] to its end, through reads of `out_step` bytes at most.
/// Returns the plaintext, or the first error as text.
pub fn decrypt<R: Read>(mut input: R, out_step: usize) -> Result<Vec<u8>, String> {
    let head = ArchiveHead::read_from(&mut input).map_err(|e| e.to_string())?;
    let signed = head.header.signer.is_some();
    let trailer_len = head.header.trailer_len();
    let mut r = DecryptReader::new(input, head, &dek()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; out_step.max(1)];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    assert!(r.is_complete(), "end of file before the final segment");
    assert_eq!(r.plaintext_len(), out.len() as u64);
    assert_eq!(r.trailer().len(), trailer_len);
    assert_eq!(r.stream_digest().is_some(), signed);
    Ok(out)
}

/// Applies up to four edits described by the input to a copy of `archive`, whose body is cut
/// into segments of `sealed` bytes after `head` bytes. Edits are byte-level (flip, truncate,
/// delete, insert, duplicate) or segment-level (swap, drop, repeat), since random byte edits
/// rarely land on segment boundaries.
pub fn edit(archive: &[u8], head: usize, sealed: usize, input: &mut Input) -> Vec<u8> {
    let mut a = archive.to_vec();
    for _ in 0..(input.byte() % 5) {
        let op = input.byte();
        let pos = input.u16() as usize;
        let val = input.byte();
        let at = if a.is_empty() { 0 } else { pos % a.len() };
        let n = (val as usize % 96) + 1;
        let segments = a.len().saturating_sub(head) / sealed;
        let seg = |k: usize| head + k * sealed..head + (k + 1) * sealed;
        match op % 8 {
            0 if !a.is_empty() => a[at] ^= val | 1,
            1 => a.truncate(pos % (a.len() + 1)),
            2 => {
                let end = (at + n).min(a.len());
                a.drain(at..end);
            }
            3 => {
                let at = pos % (a.len() + 1);
                a.splice(at..at, std::iter::repeat_n(val, n));
            }
            4 => {
                let end = (at + n).min(a.len());
                let copy = a[at..end].to_vec();
                a.splice(at..at, copy);
            }
            5 if segments >= 2 => {
                let k = pos % (segments - 1);
                let (x, y) = (seg(k), seg(k + 1));
                let first = a[x.clone()].to_vec();
                a.copy_within(y.clone(), x.start);
                a[y].copy_from_slice(&first);
            }
            6 if segments >= 1 => {
                a.drain(seg(pos % segments));
            }
            7 if segments >= 1 => {
                let s = seg(pos % segments);
                let copy = a[s.clone()].to_vec();
                a.splice(s.start..s.start, copy);
            }
            _ => {}
        }
    }
    a
}

/// Length of one sealed segment of [`vector_header`] archives.
pub const SEALED: usize = SEGMENT as usize + TAG_LEN;
