//! Fuzz target `header`: the archive header block, read before any key is known.
//! `Header::decode_prefix`, `Header::decode_body` and `ArchiveHead::read_from` must refuse
//! bad bytes with an error, never panic, and whatever they accept must encode back to the
//! very bytes read (the header MAC covers those bytes, so the encoding must be canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use offbox::format::{Header, HEADER_MAC_LEN, MAGIC, MAX_HEADER_LEN};
use offbox::stream::ArchiveHead;
use offbox_fuzz::Chunked;

fuzz_target!(|data: &[u8]| {
    // The 12-byte prefix alone.
    if let Some(prefix) = data.get(..12).and_then(|p| <&[u8; 12]>::try_from(p).ok()) {
        if let Ok(len) = Header::decode_prefix(prefix) {
            assert!(len <= MAX_HEADER_LEN);
            assert_eq!(prefix[..8], MAGIC);
        }
    }

    // The input as a postcard header body.
    if let Ok(h) = Header::decode_body(data) {
        h.validate().expect("a decoded header is valid");
        let enc = h.encode().expect("a decoded header encodes");
        assert_eq!(
            &enc[12..],
            data,
            "decode_body accepted a non-canonical body"
        );
        assert_eq!(Header::decode_body(&enc[12..]).expect("re-decodes"), h);
    }

    // The input as the start of an archive, through short reads when the input asks for it.
    let (pattern, stream) = match data.first() {
        Some(b'O') | None => (&[][..], data),
        Some(&n) => data[1..].split_at((n as usize % 8).min(data.len() - 1)),
    };
    if let Ok(head) = ArchiveHead::read_from(&mut Chunked::new(stream, pattern)) {
        let enc = head.header.encode().expect("an accepted header encodes");
        assert_eq!(
            enc, head.encoded,
            "read_from accepted a non-canonical header"
        );
        assert_eq!(stream[..enc.len()], enc[..]);
        assert_eq!(
            stream[enc.len()..enc.len() + HEADER_MAC_LEN],
            head.mac[..],
            "the MAC is the 32 bytes after the header"
        );
    }
});
