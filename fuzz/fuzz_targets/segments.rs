//! Fuzz target `segments`: the segment stream, decrypted by `DecryptReader` with the known
//! data key of the format vectors. The first input byte picks a mode:
//! - 0: a valid header block (unsigned, or signed when bit 7 is set) then fuzzed body bytes;
//! - 1: a whole fuzzed archive (the seeds are the archives of docs/format.md);
//! - 2: a real archive of a fuzz-chosen plaintext, then fuzz-chosen edits (bytes flipped,
//!   cut, inserted, segments swapped, dropped or repeated). The reader must return exactly
//!   the plaintext for the untouched archive, and may succeed on an edited one only if every
//!   byte before the trailer is unchanged: nothing else may authenticate.
//!
//! In every mode reading must end in plaintext or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use offbox_fuzz::{
    build_archive, decrypt, edit, head_len, plaintext, vector_header, Chunked, Input, SEALED,
};

/// The header blocks (unsigned, signed) of empty archives.
fn heads() -> &'static [Vec<u8>; 2] {
    static HEADS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    HEADS.get_or_init(|| {
        [false, true].map(|signed| {
            let a = build_archive(&vector_header(signed), b"");
            a[..head_len(&a)].to_vec()
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte();
    let pattern = input.take((mode as usize >> 4) & 7).to_vec();
    let out_step = 1 + input.u16() as usize;
    match mode & 3 {
        0 => {
            let mut archive = heads()[(mode >> 7) as usize].clone();
            archive.extend_from_slice(input.rest());
            let _ = decrypt(Chunked::new(&archive, &pattern), out_step);
        }
        1 => {
            let _ = decrypt(Chunked::new(input.rest(), &pattern), out_step);
        }
        _ => {
            let signed = mode & 0x80 != 0;
            let len = input.u16() as usize % (3 * SEALED);
            let plain = plaintext(len, input.byte());
            let header = vector_header(signed);
            let archive = build_archive(&header, &plain);
            let head = head_len(&archive);
            let edited = edit(&archive, head, SEALED, &mut input);
            let result = decrypt(Chunked::new(&edited, &pattern), out_step);
            if edited == archive {
                assert_eq!(
                    result.as_deref(),
                    Ok(&plain[..]),
                    "the untouched archive must decrypt"
                );
            }
            if let Ok(out) = result {
                let keep = archive.len() - header.trailer_len();
                assert_eq!(
                    edited.len(),
                    archive.len(),
                    "an archive of another length authenticated"
                );
                assert!(
                    edited[..keep] == archive[..keep],
                    "edited bytes authenticated"
                );
                assert!(out == plain, "a different plaintext authenticated");
            }
        }
    }
});
