//! Round trips and tamper cases of the streaming layer, in memory.

use std::io::{Read, Write};

use super::*;
use crate::format::{ArchiveKind, Compression, FormatError, Header, KeySlot, SignerInfo, VERSION};
use crate::secret::Key32;

const SEG: u32 = 4096;

fn header(signed: bool) -> Header {
    Header {
        version: VERSION,
        kind: ArchiveKind::System,
        created_unix: 1_700_000_000,
        appliance_id: "test".into(),
        archive_id: [1; 16],
        compression: Compression::None,
        segment_size: SEG,
        salt: [2; 32],
        nonce_prefix: [3; 7],
        slots: vec![KeySlot::Recovery {
            key_id: [4; 8],
            ephemeral: [5; 32],
            wrapped: vec![6; 48],
        }],
        signer: signed.then_some(SignerInfo { key_id: [7; 8] }),
        chain: None,
    }
}

fn dek() -> Key32 {
    Key32::from_slice(&[9u8; 32]).unwrap()
}

fn seal(plain: &[u8], signed: bool) -> Vec<u8> {
    let mut w = EncryptWriter::new(Vec::new(), &header(signed), &dek()).unwrap();
    // Odd write sizes exercise the buffering.
    for chunk in plain.chunks(1000) {
        w.write_all(chunk).unwrap();
    }
    let mut f = w.finish().unwrap();
    if signed {
        f.inner
            .extend_from_slice(&[0xAA; crate::format::header::SIGNATURE_LEN]);
    }
    f.inner
}

fn open(archive: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut cur = std::io::Cursor::new(archive);
    let head = ArchiveHead::read_from(&mut cur).map_err(|e| match e {
        head::HeadError::Format(f) => f,
        head::HeadError::Io(e) => panic!("{e}"),
    })?;
    let mut r = DecryptReader::new(cur, head, &dek())?;
    let mut out = Vec::new();
    match r.read_to_end(&mut out) {
        Ok(_) => {
            assert!(r.is_complete());
            Ok(out)
        }
        Err(e) => Err(format_error_in(&e).cloned().expect("a format error")),
    }
}

fn header_len(archive: &[u8]) -> usize {
    12 + u32::from_le_bytes(archive[8..12].try_into().unwrap()) as usize + 32
}

#[test]
fn round_trips_at_every_boundary() {
    let s = SEG as usize;
    for signed in [false, true] {
        for len in [0, 1, s - 1, s, s + 1, 2 * s, 3 * s + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let a = seal(&plain, signed);
            assert_eq!(open(&a).unwrap(), plain, "len {len} signed {signed}");
            let segments = len.div_ceil(s).max(1);
            assert_eq!(
                a.len(),
                header_len(&a) + len + 16 * segments + if signed { 64 } else { 0 }
            );
        }
    }
}

#[test]
fn every_truncation_is_detected() {
    let plain = vec![0x5Au8; 3 * SEG as usize + 100];
    for signed in [false, true] {
        let a = seal(&plain, signed);
        for cut in (0..a.len()).step_by(97).chain([
            a.len() - 1,
            header_len(&a),
            header_len(&a) + SEG as usize + 16,
        ]) {
            assert!(open(&a[..cut]).is_err(), "cut at {cut} accepted");
        }
    }
}

#[test]
fn cut_at_a_segment_boundary_is_a_segment_auth_failure() {
    let plain = vec![1u8; 2 * SEG as usize + 5];
    let a = seal(&plain, false);
    let cut = header_len(&a) + 2 * (SEG as usize + 16);
    assert_eq!(open(&a[..cut]), Err(FormatError::SegmentAuth(1)));
}

#[test]
fn swapped_segments_are_detected() {
    let plain: Vec<u8> = (0..3 * SEG as usize).map(|i| i as u8).collect();
    let a = seal(&plain, false);
    let h = header_len(&a);
    let n = SEG as usize + 16;
    let mut b = a.clone();
    b[h..h + n].copy_from_slice(&a[h + n..h + 2 * n]);
    b[h + n..h + 2 * n].copy_from_slice(&a[h..h + n]);
    assert_eq!(open(&b), Err(FormatError::SegmentAuth(0)));
}

#[test]
fn appended_bytes_and_extra_segments_are_detected() {
    let plain = vec![3u8; SEG as usize + 10];
    for signed in [false, true] {
        let a = seal(&plain, signed);
        for extra in [1usize, 16, 64, SEG as usize + 16] {
            let mut b = a.clone();
            b.extend(std::iter::repeat_n(0u8, extra));
            assert!(open(&b).is_err(), "{extra} appended bytes accepted");
        }
    }
}

#[test]
fn every_flipped_bit_region_is_detected() {
    let plain = vec![7u8; SEG as usize * 2];
    let a = seal(&plain, false);
    let h = header_len(&a);
    for pos in (0..a.len()).step_by(61) {
        let mut b = a.clone();
        b[pos] ^= 0x01;
        let r = open(&b);
        assert!(r.is_err(), "flip at {pos} accepted");
        if pos >= 12 && pos < h {
            // Header edits are caught by the header MAC (or earlier, by the decoder).
            assert!(
                matches!(
                    r,
                    Err(FormatError::HeaderAuth
                        | FormatError::HeaderDecode(_)
                        | FormatError::HeaderInvalid(_)
                        | FormatError::UnsupportedVersion(_)
                        | FormatError::TruncatedHeader
                        | FormatError::HeaderTooLarge(_))
                ),
                "flip at {pos}: {r:?}"
            );
        }
        if pos >= h {
            assert!(
                matches!(r, Err(FormatError::SegmentAuth(_))),
                "flip at {pos}: {r:?}"
            );
        }
    }
}

#[test]
fn wrong_key_fails_on_the_header_mac() {
    let a = seal(b"secret", false);
    let mut cur = std::io::Cursor::new(&a[..]);
    let head = ArchiveHead::read_from(&mut cur).ok().unwrap();
    let other = Key32::from_slice(&[8u8; 32]).unwrap();
    assert_eq!(
        DecryptReader::new(cur, head, &other).err(),
        Some(FormatError::HeaderAuth)
    );
}

#[test]
fn unfinished_writer_leaves_no_valid_archive() {
    // Simulates a crash: the bytes written so far, without finish().
    let mut v = Vec::new();
    let mut w = EncryptWriter::new(&mut v, &header(false), &dek()).unwrap();
    w.write_all(&vec![1u8; 3 * SEG as usize]).unwrap();
    drop(w);
    assert!(v.len() > header_len(&v));
    assert!(open(&v).is_err());
}

#[test]
fn signed_stream_digest_matches_between_writer_and_reader() {
    let mut w = EncryptWriter::new(Vec::new(), &header(true), &dek()).unwrap();
    w.write_all(&[1u8; 10_000]).unwrap();
    let f = w.finish().unwrap();
    let mut a = f.inner;
    a.extend_from_slice(&[0xAB; 64]);
    let mut cur = std::io::Cursor::new(&a[..]);
    let head = ArchiveHead::read_from(&mut cur).ok().unwrap();
    let mut r = DecryptReader::new(cur, head, &dek()).unwrap();
    std::io::copy(&mut r, &mut std::io::sink()).unwrap();
    assert_eq!(r.stream_digest(), f.stream_digest);
    assert_eq!(r.trailer(), &[0xAB; 64]);
}

/// Fails every write after `ok` bytes.
struct FailAfter {
    ok: usize,
    written: usize,
}

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() > self.ok {
            return Err(std::io::Error::other("disk full"));
        }
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_inner_write_poisons_the_writer() {
    let mut w = EncryptWriter::new(
        FailAfter {
            ok: 5000,
            written: 0,
        },
        &header(false),
        &dek(),
    )
    .unwrap();
    let data = vec![1u8; 3 * SEG as usize];
    let first = w.write_all(&data);
    assert_eq!(first.unwrap_err().to_string(), "disk full");
    let again = w.write(&[1, 2, 3]).unwrap_err();
    assert!(again
        .to_string()
        .starts_with("an earlier write of this archive failed"));
    assert!(w.finish().is_err());
}

/// Reads `data`, then fails with "link down" instead of reaching its end.
struct ReadThenFail<'a> {
    data: &'a [u8],
}

impl Read for ReadThenFail<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.data.is_empty() {
            return Err(std::io::Error::other("link down"));
        }
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Segments are opened ahead on threads: a read error of a later segment still comes only
/// after the plaintext of every segment before it, exactly as an inline reader gives it.
#[test]
fn a_read_error_comes_after_the_segments_before_it() {
    let plain: Vec<u8> = (0..8 * SEG as usize)
        .map(|i| (i * 13 % 256) as u8)
        .collect();
    for signed in [false, true] {
        let a = seal(&plain, signed);
        let (h, n) = (header_len(&a), SEG as usize + 16);
        // The link fails in the middle of segment 5.
        let mut cur = ReadThenFail {
            data: &a[..h + 5 * n + 100],
        };
        let head = ArchiveHead::read_from(&mut cur).ok().unwrap();
        let mut r = DecryptReader::new(cur, head, &dek()).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1000];
        let err = loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("end of file on a failed link"),
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) => break e,
            }
        };
        assert_eq!(err.to_string(), "link down");
        assert_eq!(got, plain[..5 * SEG as usize], "signed {signed}");
        assert!(!r.is_complete());
        assert_eq!(r.stream_digest(), None);
        // The reader stays failed, with the same error.
        assert_eq!(r.read(&mut buf).unwrap_err().to_string(), "link down");
    }
}

/// A forged segment is reported as such, even when the stream also ends too early a few
/// segments later (the truncation is read ahead, but errors come in stream order).
#[test]
fn errors_come_in_stream_order() {
    let plain = vec![4u8; 8 * SEG as usize];
    let a = seal(&plain, true);
    let (h, n) = (header_len(&a), SEG as usize + 16);
    // Segment 4 is 70 bytes long: less than a tag and the signature.
    let cut = h + 4 * n + 70;
    let mut b = a[..cut].to_vec();
    b[h + n + 7] ^= 0x40;
    assert_eq!(open(&b), Err(FormatError::SegmentAuth(1)));
    // Read again after the failure: the same error, and no plaintext of a later segment.
    let mut cur = std::io::Cursor::new(&b[..]);
    let head = ArchiveHead::read_from(&mut cur).ok().unwrap();
    let mut r = DecryptReader::new(cur, head, &dek()).unwrap();
    let mut buf = vec![0u8; SEG as usize];
    assert_eq!(r.read(&mut buf).unwrap(), SEG as usize);
    for _ in 0..3 {
        let e = r.read(&mut buf).unwrap_err();
        assert_eq!(format_error_in(&e), Some(&FormatError::SegmentAuth(1)));
    }
    // Without the forgery, the truncation itself.
    assert_eq!(open(&a[..cut]), Err(FormatError::Truncated(4)));
}
