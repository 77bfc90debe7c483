//! PAX extended headers (POSIX.1-2001 `x` entries) of the payload: the records offbox writes
//! before an entry, and the decoding of the record keys it reads back.
//!
//! A record is `LEN KEY=VALUE\n`, where LEN counts the whole record in decimal and VALUE
//! may hold any bytes. Extended attributes use the `SCHILY.xattr.NAME` keys of star and GNU
//! tar, with `%` and `=` in NAME written as `%25` and `%3D` (as GNU tar does). See
//! docs/format.md §7 for every key offbox writes.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::{Builder, EntryType, Header};

/// The key prefix of an extended attribute record.
pub(crate) const XATTR_PREFIX: &str = "SCHILY.xattr.";

/// The records of one extended header, in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct Records {
    data: Vec<u8>,
}

impl Records {
    /// Adds `key=value`.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        // The length field counts its own digits: grow it until it is consistent.
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while rest + len.to_string().len() != len {
            len = rest + len.to_string().len();
        }
        self.data.extend_from_slice(len.to_string().as_bytes());
        self.data.push(b' ');
        self.data.extend_from_slice(key);
        self.data.push(b'=');
        self.data.extend_from_slice(value);
        self.data.push(b'\n');
    }

    /// Adds a decimal number.
    pub(crate) fn add_num(&mut self, key: &str, n: u64) {
        self.add(key.as_bytes(), n.to_string().as_bytes());
    }

    /// Adds the extended attribute `name` (raw bytes, as the kernel lists it).
    pub(crate) fn add_xattr(&mut self, name: &[u8], value: &[u8]) {
        let mut key = XATTR_PREFIX.as_bytes().to_vec();
        for &b in name {
            match b {
                b'%' => key.extend_from_slice(b"%25"),
                b'=' => key.extend_from_slice(b"%3D"),
                _ => key.push(b),
            }
        }
        self.add(&key, value);
    }

    /// The encoded records.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Writes the records as an `x` entry that applies to the next entry, named
    /// `PaxHeaders/BASENAME` for tars that show it; nothing when there are none.
    pub(crate) fn write<W: Write>(&self, b: &mut Builder<W>, path: &Path) -> io::Result<()> {
        if self.data.is_empty() {
            return Ok(());
        }
        let mut h = Header::new_ustar();
        let base = path.file_name().map_or(&b""[..], |n| n.as_bytes());
        let mut name = b"PaxHeaders/".to_vec();
        name.extend_from_slice(base);
        name.truncate(99);
        h.as_old_mut().name[..name.len()].copy_from_slice(&name);
        h.set_entry_type(EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(self.data.len() as u64);
        h.set_cksum();
        b.append(&h, &self.data[..])
    }
}

/// The records of an `x` entry's data, as `(key, value)`; values may hold any bytes,
/// newlines included (each record's length says where it ends).
pub(crate) fn parse(data: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a malformed PAX extended header",
        )
    };
    let mut out = Vec::new();
    let mut rest = data;
    // Some writers pad the data with NULs.
    while rest.first().is_some_and(|&b| b != 0) {
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[sp + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// The attribute name of a `SCHILY.xattr.NAME` key, decoded; `None` for other keys.
pub(crate) fn xattr_name(key: &[u8]) -> Option<Vec<u8>> {
    let rest = key.strip_prefix(XATTR_PREFIX.as_bytes())?;
    let mut out = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() {
        match &rest[i..] {
            [b'%', b'2', b'5', ..] => {
                out.push(b'%');
                i += 3;
            }
            [b'%', b'3', b'D' | b'd', ..] => {
                out.push(b'=');
                i += 3;
            }
            _ => {
                out.push(rest[i]);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lengths_count_themselves() {
        for n in [0usize, 1, 5, 6, 7, 8, 90, 95, 96, 97, 990, 995, 996, 9990] {
            let mut r = Records::default();
            r.add(b"k", &vec![b'v'; n]);
            let text = r.bytes();
            let sp = text.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&text[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, text.len(), "value of {n} bytes");
        }
    }

    #[test]
    fn xattr_names_escape_percent_and_equals() {
        let mut r = Records::default();
        r.add_xattr(b"user.a=b%c", b"v");
        let text = r.bytes();
        assert!(
            text.ends_with(b" SCHILY.xattr.user.a%3Db%25c=v\n"),
            "{text:?}"
        );
        assert_eq!(
            xattr_name(b"SCHILY.xattr.user.a%3Db%25c").unwrap(),
            b"user.a=b%c"
        );
        assert_eq!(xattr_name(b"GNU.sparse.name"), None);
    }

    #[test]
    fn records_with_newlines_in_values_parse_back() {
        let mut b = Builder::new(Vec::new());
        let mut r = Records::default();
        r.add_xattr(b"user.bin", &[0, 1, 2, b'\n', 255]);
        r.add_num("GNU.sparse.realsize", 7);
        r.write(&mut b, Path::new("etc/f")).unwrap();
        let tar = b.into_inner().unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let mut e = ar.entries().unwrap().raw(true).next().unwrap().unwrap();
        assert_eq!(e.header().entry_type(), EntryType::XHeader);
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        assert_eq!(
            parse(&data).unwrap(),
            vec![
                (b"SCHILY.xattr.user.bin".to_vec(), vec![0, 1, 2, b'\n', 255]),
                (b"GNU.sparse.realsize".to_vec(), b"7".to_vec())
            ]
        );
        for bad in [&b"5 a=b\n"[..], b"x a=b\n", b"6 ab\n\n", b"99 a=b\n"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
