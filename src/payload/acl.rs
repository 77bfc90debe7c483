//! POSIX ACLs as text, for the `SCHILY.acl.access` / `SCHILY.acl.default` records that
//! `tar --acls` (GNU tar, bsdtar) reads.
//!
//! offbox restores ACLs from the exact `SCHILY.xattr.system.posix_acl_*` records; the text
//! form is written beside them only for standard tars. It is the `acl_to_text` long form
//! with numeric ids (`user:1000:r-x`), so that it means the same on another host whatever
//! its user names, one entry per line.

/// The text form of a `system.posix_acl_*` attribute value (Linux's binary layout: a
/// little-endian version 2, then 8-byte entries of tag, permissions and id), or `None` when
/// the value is not such an ACL.
pub(crate) fn to_text(value: &[u8]) -> Option<String> {
    let (version, entries) = value.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*version) != 2 || entries.len() % 8 != 0 {
        return None;
    }
    let mut lines = Vec::new();
    for e in entries.chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let (kind, qualifier) = match tag {
            0x01 => ("user", String::new()),
            0x02 => ("user", id.to_string()),
            0x04 => ("group", String::new()),
            0x08 => ("group", id.to_string()),
            0x10 => ("mask", String::new()),
            0x20 => ("other", String::new()),
            _ => return None,
        };
        let bit = |m: u16, c: char| if perm & m != 0 { c } else { '-' };
        lines.push(format!(
            "{kind}:{qualifier}:{}{}{}",
            bit(4, 'r'),
            bit(2, 'w'),
            bit(1, 'x')
        ));
    }
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u16, perm: u16, id: u32) -> Vec<u8> {
        let mut v = tag.to_le_bytes().to_vec();
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
        v
    }

    #[test]
    fn binary_acl_becomes_numeric_text() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (t, p, i) in [
            (0x01, 6, u32::MAX),
            (0x02, 5, 1000),
            (0x04, 4, u32::MAX),
            (0x08, 7, 50),
            (0x10, 7, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            v.extend(entry(t, p, i));
        }
        assert_eq!(
            to_text(&v).unwrap(),
            "user::rw-\nuser:1000:r-x\ngroup::r--\ngroup:50:rwx\nmask::rwx\nother::---"
        );
        assert_eq!(to_text(b"junk"), None);
        assert_eq!(to_text(&1u32.to_le_bytes()), None);
    }
}
