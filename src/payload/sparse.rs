//! Sparse files in the PAX sparse format 1.0 of GNU tar.
//!
//! Packing asks the file system where the data is (`SEEK_DATA`/`SEEK_HOLE` on the open
//! descriptor) only for a file that has fewer blocks allocated than its size says. Such a
//! file is stored as a regular entry named `DIR/GNUSparseFile.0/NAME`, with the PAX records
//! `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.name=PATH` and
//! `GNU.sparse.realsize=SIZE`; its data starts with the map (the number of extents, then
//! each extent's offset and length, one decimal per line, padded with NULs to a 512-byte
//! block), followed by the extents' bytes. Holes take no space in the archive. Restoring
//! sets the file's length and writes the extents at their offsets, so the holes come back
//! as holes.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::AsFd;
#[cfg(test)]
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

use super::pax::Records;

/// One run of data: offset and length.
pub(crate) type Extent = (u64, u64);

/// The data extents of the open file `f` of `size` bytes, or `None` when it is not sparse
/// (every block allocated, or a file system without `SEEK_DATA`). The last extent always
/// ends at `size` (a zero-length one marks a trailing hole).
pub(crate) fn data_extents(
    f: &File,
    meta: &Metadata,
    size: u64,
) -> io::Result<Option<Vec<Extent>>> {
    if size == 0 || meta.blocks().saturating_mul(512) >= size {
        return Ok(None);
    }
    let mut extents = Vec::new();
    let mut off = 0u64;
    while off < size {
        let data = match lseek(f.as_fd(), off as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            // No data after `off`: the rest is a hole.
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = match lseek(f.as_fd(), data as i64, Whence::SeekHole) {
            Ok(h) => (h as u64).min(size),
            Err(Errno::ENXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if hole <= data {
            break;
        }
        extents.push((data, hole - data));
        off = hole;
    }
    if extents == [(0, size)] {
        return Ok(None);
    }
    if extents.last().is_none_or(|&(o, l)| o + l < size) {
        extents.push((size, 0));
    }
    Ok(Some(extents))
}

/// The map that starts the entry's data, padded to a 512-byte block.
pub(crate) fn map_bytes(extents: &[Extent]) -> Vec<u8> {
    let mut s = format!("{}\n", extents.len());
    for (o, l) in extents {
        s.push_str(&format!("{o}\n{l}\n"));
    }
    let mut v = s.into_bytes();
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

/// The PAX records of a sparse entry stored as `stored`, of `size` bytes.
pub(crate) fn records(r: &mut Records, stored: &Path, size: u64) {
    use std::os::unix::ffi::OsStrExt;
    r.add(b"GNU.sparse.major", b"1");
    r.add(b"GNU.sparse.minor", b"0");
    r.add(b"GNU.sparse.name", stored.as_os_str().as_bytes());
    r.add_num("GNU.sparse.realsize", size);
}

/// The name in the entry's own header: `DIR/GNUSparseFile.0/NAME`, what a tar without
/// sparse support extracts (the map and the data, not the file).
pub(crate) fn header_name(stored: &Path) -> PathBuf {
    let name = stored.file_name().unwrap_or(stored.as_os_str());
    stored
        .parent()
        .unwrap_or(Path::new(""))
        .join("GNUSparseFile.0")
        .join(name)
}

/// A sparse entry being restored: its real name and size, from the PAX records.
#[derive(Debug, Default)]
pub(crate) struct SparseInfo {
    pub(crate) major: Option<Vec<u8>>,
    pub(crate) minor: Option<Vec<u8>>,
    pub(crate) name: Option<Vec<u8>>,
    pub(crate) realsize: Option<u64>,
}

impl SparseInfo {
    /// Takes a PAX record if it is one of the sparse ones.
    pub(crate) fn take(&mut self, key: &[u8], value: &[u8]) {
        match key {
            b"GNU.sparse.major" => self.major = Some(value.to_vec()),
            b"GNU.sparse.minor" => self.minor = Some(value.to_vec()),
            b"GNU.sparse.name" => self.name = Some(value.to_vec()),
            b"GNU.sparse.realsize" => {
                self.realsize = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok())
            }
            _ => {}
        }
    }

    /// Whether the entry is sparse: `Ok(Some(size))` for format 1.0, an error for a sparse
    /// format offbox does not write.
    pub(crate) fn real_size(&self) -> io::Result<Option<u64>> {
        match (&self.major, &self.minor, self.realsize) {
            (None, None, _) => Ok(None),
            (Some(ma), Some(mi), Some(size)) if ma == b"1" && mi == b"0" => Ok(Some(size)),
            _ => Err(invalid(
                "it uses a sparse format other than PAX 1.0, which offbox does not write",
            )),
        }
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads the map at the start of a sparse entry of `entry_size` bytes: the extents, and how
/// many bytes the map took (a multiple of 512). Checks that the extents are in order, inside
/// `real_size`, and that their lengths add up to the rest of the entry.
pub(crate) fn read_map<R: Read>(
    r: &mut R,
    entry_size: u64,
    real_size: u64,
) -> io::Result<(Vec<Extent>, u64)> {
    let mut text = Vec::new();
    let mut numbers: Vec<u64> = Vec::new();
    let mut want = None;
    let mut block = [0u8; 512];
    while want.is_none_or(|n| numbers.len() < 1 + 2 * n) {
        if text.len() as u64 + 512 > entry_size {
            return Err(invalid("its sparse map is longer than the entry"));
        }
        r.read_exact(&mut block)?;
        text.extend_from_slice(&block);
        numbers.clear();
        let mut lines = text.split(|&b| b == b'\n');
        let complete = text.iter().filter(|&&b| b == b'\n').count();
        for line in lines.by_ref().take(complete) {
            let n = std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| invalid("its sparse map holds something that is not a number"))?;
            numbers.push(n);
        }
        if let Some(&n) = numbers.first() {
            if n > entry_size / 2 + 1 {
                return Err(invalid(
                    "its sparse map announces more extents than can fit",
                ));
            }
            want = Some(n as usize);
        }
    }
    let n = want.unwrap_or(0);
    let extents: Vec<Extent> = numbers[1..1 + 2 * n]
        .chunks_exact(2)
        .map(|c| (c[0], c[1]))
        .collect();
    let map_len = text.len() as u64;
    let mut end = 0u64;
    let mut data = 0u64;
    for &(o, l) in &extents {
        let stop = o
            .checked_add(l)
            .ok_or_else(|| invalid("a sparse extent overflows"))?;
        if o < end || stop > real_size {
            return Err(invalid(
                "its sparse extents overlap, are out of order or exceed its size",
            ));
        }
        end = stop;
        data += l;
    }
    if map_len + data != entry_size {
        return Err(invalid(
            "its sparse extents do not add up to the entry's size",
        ));
    }
    Ok((extents, map_len))
}

/// Writes the extents read from `r` into `f` at their offsets, after giving `f` its real
/// size; what lies between them stays a hole. (Restores hand the extents to the writer
/// pool instead, chunk by chunk; this serial form checks the map in the tests below.)
#[cfg(test)]
pub(crate) fn write_extents<R: Read>(
    r: &mut R,
    f: &File,
    extents: &[Extent],
    real_size: u64,
) -> io::Result<()> {
    f.set_len(real_size)?;
    let mut buf = vec![0u8; 256 * 1024];
    for &(mut off, len) in extents {
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            r.read_exact(&mut buf[..want])?;
            f.write_all_at(&buf[..want], off)?;
            off += want as u64;
            left -= want as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trips_and_is_block_padded() {
        let ext = vec![(0, 4096), (1 << 30, 8192), ((1 << 30) + 65536, 0)];
        let map = map_bytes(&ext);
        assert_eq!(map.len(), 512);
        assert!(map.starts_with(b"3\n0\n4096\n1073741824\n8192\n1073807360\n0\n\0"));
        let mut data = map.clone();
        data.extend(vec![7u8; 4096 + 8192]);
        let (back, used) = read_map(&mut &data[..], data.len() as u64, (1 << 30) + 65536).unwrap();
        assert_eq!((back, used), (ext, 512));
    }

    #[test]
    fn map_spanning_blocks_is_read_whole() {
        let ext: Vec<Extent> = (0..100).map(|i| (i * 1_000_000_000, 1)).collect();
        let map = map_bytes(&ext);
        assert!(map.len() > 512);
        let mut data = map.clone();
        data.extend(vec![1u8; 100]);
        let (back, used) = read_map(&mut &data[..], data.len() as u64, u64::MAX).unwrap();
        assert_eq!(back, ext);
        assert_eq!(used, map.len() as u64);
    }

    #[test]
    fn bad_maps_are_refused() {
        for (ext, size, real) in [
            (vec![(10u64, 5u64), (0, 5)], 10u64, 100u64), // out of order
            (vec![(0, 50)], 50, 20),                      // beyond the real size
            (vec![(0, 5)], 6, 100),                       // does not add up
        ] {
            let mut data = map_bytes(&ext);
            data.extend(vec![0u8; size as usize]);
            let len = data.len() as u64;
            assert!(read_map(&mut &data[..], len, real).is_err(), "{ext:?}");
        }
        let junk = vec![b'x'; 512];
        assert!(read_map(&mut &junk[..], 512, 10).is_err());
    }

    #[test]
    fn holes_are_found_and_restored_as_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let f = File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", (64 << 20) - 4).unwrap();
        f.sync_all().unwrap();
        let f = File::open(&p).unwrap();
        let meta = f.metadata().unwrap();
        let Some(ext) = data_extents(&f, &meta, 64 << 20).unwrap() else {
            eprintln!("note: this file system reports no holes; sparse detection not exercised");
            return;
        };
        assert_eq!(ext.first().unwrap().0, 0);
        let data: u64 = ext.iter().map(|e| e.1).sum();
        assert!(data < 1 << 20, "{ext:?}");
        let last = ext.last().unwrap();
        assert_eq!(last.0 + last.1, 64 << 20);

        let mut content = Vec::new();
        for &(o, l) in &ext {
            let mut b = vec![0u8; l as usize];
            f.read_exact_at(&mut b, o).unwrap();
            content.extend(b);
        }
        let out = File::create(dir.path().join("r")).unwrap();
        write_extents(&mut &content[..], &out, &ext, 64 << 20).unwrap();
        let back = std::fs::read(dir.path().join("r")).unwrap();
        assert_eq!(back, std::fs::read(&p).unwrap());
        assert!(out.metadata().unwrap().blocks() * 512 < 1 << 20);
    }
}
