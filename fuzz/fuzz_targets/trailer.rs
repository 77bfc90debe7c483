//! Fuzz target `trailer`: the keyless side of an archive, as a backup server sees it.
//! The first input byte picks a mode:
//! - 0: `stream::Framer` over fuzzed bytes, with small segment sizes, any trailer length and
//!   short reads; the segments and trailer it cuts must tile the input exactly, and its
//!   digest must be SHA-256 of everything before the trailer;
//! - 1: `PublicKey::from_pem_or_der` on fuzzed key files, and `PublicKey::verify` of a
//!   fuzzed signature; an accepted key must survive its PEM and DER encodings;
//! - 2: `jobs::signature::verify_keyless` over a whole fuzzed archive, trusting the test key
//!   of fuzz/src/lib.rs (the seeds are archives it signed), and with bit 2 of the mode set
//!   also accepting what fails the check (`Trust::accept_forged`);
//! - 3: a real archive signed by the test key, then fuzz-chosen edits; `verify_keyless`
//!   must accept the untouched archive and refuse any change before the trailer.
#![no_main]

use aws_lc_rs::digest;
use libfuzzer_sys::fuzz_target;
use offbox::format::signature::PublicKey;
use offbox::format::TAG_LEN;
use offbox::jobs::signature::{verify_keyless, SignatureStatus};
use offbox::stream::{signed_message, Framer};
use offbox_fuzz::{
    build_archive, edit, head_len, plaintext, trust, vector_header, Chunked, Input, SEALED,
};

fn framer(input: &mut Input, pattern: &[u8]) {
    let knobs = input.byte();
    let segment_size = if knobs & 1 == 0 {
        1 + u32::from(knobs >> 1) % 48
    } else {
        4096
    };
    let trailer_len = match input.byte() {
        0..=127 => 0,
        128..=191 => 64,
        n => usize::from(n) % 80,
    };
    let prelude = input.take(usize::from(knobs >> 4)).to_vec();
    let body = input.rest();
    let mut f = Framer::new(
        Chunked::new(body, pattern),
        segment_size,
        trailer_len,
        &[&prelude],
    );
    let sealed = segment_size as usize + TAG_LEN;
    let mut at = 0usize;
    let mut expected_index = 0;
    loop {
        let seg = match f.advance() {
            Ok(Some(seg)) => seg,
            Ok(None) => break,
            Err(_) => {
                assert!(
                    body.len() - at < trailer_len + TAG_LEN,
                    "an error with enough bytes left for a segment and the trailer"
                );
                return;
            }
        };
        assert_eq!(seg.index, expected_index);
        expected_index += 1;
        if seg.last {
            assert!(
                seg.len >= TAG_LEN && seg.len <= sealed,
                "last segment of {} bytes",
                seg.len
            );
        } else {
            assert_eq!(seg.len, sealed, "a short segment that is not the last");
        }
        assert!(
            f.segment(seg.len) == &body[at..at + seg.len],
            "the segment is not the input"
        );
        at += seg.len;
        assert_eq!(f.is_done(), seg.last);
    }
    assert!(f.is_done());
    assert!(f.advance().expect("done stays done").is_none());
    assert_eq!(f.trailer().len(), trailer_len);
    assert!(
        f.trailer() == &body[at..],
        "the trailer is not the rest of the input"
    );
    assert_eq!(f.bytes_read(), (prelude.len() + body.len()) as u64);
    let want = (trailer_len > 0).then(|| {
        let mut d = digest::Context::new(&digest::SHA256);
        d.update(&prelude);
        d.update(&body[..at]);
        <[u8; 32]>::try_from(d.finish().as_ref()).expect("32 bytes")
    });
    assert_eq!(f.stream_digest(), want);
}

fn public_key_file(input: &mut Input) {
    // Odd first byte: the last 64 bytes are a signature to check, the rest is the key file.
    let with_signature = input.byte() & 1 == 1;
    let rest = input.rest();
    let n = if with_signature {
        rest.len().min(64)
    } else {
        0
    };
    let (key, sig) = rest.split_at(rest.len() - n);
    let Ok(pk) = PublicKey::from_pem_or_der(key) else {
        return;
    };
    assert_eq!(
        PublicKey::from_pem_or_der(pk.to_pem().as_bytes()),
        Ok(pk.clone())
    );
    assert_eq!(PublicKey::from_pem_or_der(&pk.spki_der()), Ok(pk.clone()));
    let _ = pk.key_id();
    let _ = pk.verify(&signed_message(&[0; 32]), sig);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte();
    let pattern = input.take((mode as usize >> 4) & 7).to_vec();
    match mode & 3 {
        0 => framer(&mut input, &pattern),
        1 => public_key_file(&mut input),
        2 => {
            // Bit 2 of the mode: also open archives that fail the check (the loud option).
            let mut trust = trust();
            if mode & 4 != 0 {
                trust.accept_forged();
            }
            let _ = verify_keyless(Chunked::new(input.rest(), &pattern), &trust);
        }
        _ => {
            let len = input.u16() as usize % (3 * SEALED);
            let plain = plaintext(len, input.byte());
            let archive = build_archive(&vector_header(true), &plain);
            let head = head_len(&archive);
            let edited = edit(&archive, head, SEALED, &mut input);
            let result = verify_keyless(Chunked::new(&edited, &pattern), &trust());
            if edited == archive {
                match &result {
                    Ok(s) => assert!(
                        matches!(s.signature, SignatureStatus::Verified { .. }),
                        "the untouched signed archive is {}",
                        s.signature
                    ),
                    Err(e) => panic!("the untouched signed archive was refused: {e}"),
                }
            }
            if result.is_ok() {
                let keep = archive.len() - 64;
                assert_eq!(
                    edited.len(),
                    archive.len(),
                    "an archive of another length verified"
                );
                assert!(edited[..keep] == archive[..keep], "edited bytes verified");
            }
        }
    }
});
