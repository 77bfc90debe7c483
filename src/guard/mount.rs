//! The `file://` rules: the directory must be on a network filesystem (NFS, CIFS/SMB2, or
//! FUSE sshfs, by `statfs` magic and /proc/self/mountinfo), and the mount's server must not
//! be this appliance. Pure: the mounts come with the [`SelfIdentity`], the directory's
//! filesystem facts ([`DirFacts`]) from `targets::path`.
// The rescue-kit build (no transports) has no file:// target to check.
#![cfg_attr(not(feature = "target-path"), allow(dead_code))]

use std::path::{Path, PathBuf};

use super::{Refusal, Rule, SelfIdentity};

const NFS: i64 = 0x6969;
const CIFS: i64 = 0xFF53_4D42_u32 as i64;
const SMB2: i64 = 0xFE53_4D42_u32 as i64;
const SMB: i64 = 0x517B;
const FUSE: i64 = 0x6573_5546;

/// A mount as /proc/self/mountinfo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount point.
    pub point: PathBuf,
    /// Filesystem type (`nfs4`, `cifs`, `fuse.sshfs`...).
    pub fstype: String,
    /// Source (`host:/export`, `//host/share`, `user@host:path`).
    pub source: String,
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(Ok(v)) = s.get(i + 1..i + 4).map(|o| u8::from_str_radix(o, 8)) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo text.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = unescape(pre.split(' ').nth(4)?);
            let mut p = post.split(' ');
            let fstype = p.next()?.to_string();
            let source = unescape(p.next()?);
            Some(Mount {
                point: PathBuf::from(point),
                fstype,
                source,
            })
        })
        .collect()
}

/// The mount that holds `path` (longest mount point prefix; the last one wins on ties).
pub(crate) fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.point)
            && best.is_none_or(|b| m.point.as_os_str().len() >= b.point.as_os_str().len())
        {
            best = Some(m);
        }
    }
    best
}

/// The server host of a network mount source.
pub(crate) fn server_of(m: &Mount) -> Option<String> {
    let s = m.source.as_str();
    if let Some(rest) = s.strip_prefix("//") {
        // CIFS: //host/share
        return rest.split('/').next().map(str::to_string);
    }
    // NFS host:/export, [v6]:/export; sshfs [user@]host:path
    let s = s.rsplit_once('@').map_or(s, |(_, h)| h);
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').map(|(h, _)| h.to_string());
    }
    s.split_once(':').map(|(h, _)| h.to_string())
}

/// What a `file://` directory is on, as `targets::path` read it: its canonical path and the
/// `statfs` magic of its filesystem.
#[derive(Debug, Clone)]
pub(crate) struct DirFacts {
    /// The canonical (symlink-free) path.
    pub canon: PathBuf,
    /// `statfs` `f_type`.
    pub magic: i64,
}

/// Whether a filesystem of `statfs` magic `magic` and mount type `fstype` is a network
/// filesystem offbox accepts for `file://`.
pub(crate) fn is_network(magic: i64, fstype: &str) -> bool {
    match magic {
        x if [NFS, CIFS, SMB2, SMB].contains(&x) => true,
        FUSE => fstype == "fuse.sshfs",
        _ => false,
    }
}

/// Checks a `file://` directory against this appliance's mounts: it must be on a network
/// filesystem whose mount source names a server. Returns the mount and its server host;
/// the caller resolves that host, checks it like any target host, and relabels a refusal
/// with [`served_by_self`].
pub(crate) fn check_mount(
    me: &SelfIdentity,
    target: &str,
    dir: &DirFacts,
) -> Result<(Mount, String), Refusal> {
    let canon = &dir.canon;
    let m = mount_of(&me.mounts, canon).cloned();
    let fstype = m.as_ref().map_or("?", |m| m.fstype.as_str()).to_string();
    let refuse = |rule: Rule, resolved: String| Refusal {
        rule,
        target: target.to_string(),
        resolved,
    };
    let Some(m) = m.filter(|_| is_network(dir.magic, &fstype)) else {
        return Err(refuse(
            Rule::LocalFilesystem,
            format!(
                "{} on {fstype} (statfs magic {:#x})",
                canon.display(),
                dir.magic
            ),
        ));
    };
    let Some(host) = server_of(&m).filter(|h| !h.is_empty()) else {
        return Err(refuse(
            Rule::MountServedBySelf,
            format!(
                "{} from {:?}: no server host in the mount source",
                canon.display(),
                m.source
            ),
        ));
    };
    me.check_name(target, &host)
        .map_err(|r| served_by_self(r, canon, &m))?;
    Ok((m, host))
}

/// Turns a refusal of a mount's server into the `file://` rule: the mount is served by
/// this appliance.
pub(crate) fn served_by_self(mut r: Refusal, canon: &Path, m: &Mount) -> Refusal {
    r.rule = Rule::MountServedBySelf;
    r.resolved = format!(
        "{} mounted from {} ({})",
        canon.display(),
        m.source,
        r.resolved
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_and_servers() {
        let text = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    40 22 0:40 / /mnt/nfs rw - nfs4 10.0.0.5:/export/pam rw\n\
                    41 22 0:41 / /mnt/smb\\040x rw - cifs //nas.example/backup rw\n\
                    42 22 0:42 / /mnt/ssh rw - fuse.sshfs offbox@[fd00::9]:/srv rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 4);
        let find = |p: &str| mount_of(&m, Path::new(p)).unwrap().clone();
        assert_eq!(find("/etc").fstype, "ext4");
        assert_eq!(server_of(&find("/mnt/nfs/a")).as_deref(), Some("10.0.0.5"));
        assert_eq!(
            server_of(&find("/mnt/smb x/b")).as_deref(),
            Some("nas.example")
        );
        assert_eq!(server_of(&find("/mnt/ssh")).as_deref(), Some("fd00::9"));
        assert_eq!(server_of(&find("/")), None);
    }

    fn me_with(mounts: &str) -> SelfIdentity {
        SelfIdentity {
            interfaces: vec![("eth0".into(), "192.0.2.2".parse().unwrap())],
            names: vec!["pam01".into()],
            mounts: parse_mountinfo(mounts),
            ..SelfIdentity::default()
        }
    }

    #[test]
    fn mount_decisions() {
        let me = me_with(
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
             40 22 0:40 / /mnt/nfs rw - nfs4 10.0.0.5:/export/pam rw\n\
             41 22 0:41 / /mnt/self rw - nfs4 192.0.2.2:/export rw\n\
             42 22 0:42 / /mnt/lo rw - cifs //localhost/backup rw\n\
             43 22 0:43 / /mnt/ssh rw - fuse.sshfs offbox@backup.example:/srv rw\n\
             44 22 0:44 / /mnt/fuse rw - fuse.other thing rw\n\
             45 22 0:45 / /mnt/nohost rw - nfs4 :/export rw\n\
             46 22 0:46 / /mnt/name rw - nfs4 PAM01:/export rw\n",
        );
        // (directory, statfs magic, Ok(server) or the words of the refusal)
        let table: &[(&str, i64, Result<&str, &str>)] = &[
            ("/mnt/nfs/a", NFS, Ok("10.0.0.5")),
            ("/mnt/ssh", FUSE, Ok("backup.example")),
            (
                "/mnt/lo",
                CIFS,
                Err("network mount served by this appliance"),
            ),
            (
                "/mnt/self/x",
                NFS,
                Err("mounted from 192.0.2.2:/export (192.0.2.2)"),
            ),
            ("/mnt/name", NFS, Err("mounted from PAM01:/export")),
            (
                "/mnt/nohost",
                NFS,
                Err("no server host in the mount source"),
            ),
            (
                "/mnt/fuse",
                FUSE,
                Err("local filesystem, not a network mount"),
            ),
            ("/etc", 0xEF53, Err("local filesystem, not a network mount")),
            ("/mnt/nfs", 0xEF53, Err("statfs magic 0xef53")),
        ];
        for (dir, magic, want) in table {
            let facts = DirFacts {
                canon: PathBuf::from(dir),
                magic: *magic,
            };
            match (check_mount(&me, "file://x", &facts), want) {
                (Ok((_, host)), Ok(h)) => assert_eq!(host, *h, "{dir}"),
                (Err(r), Err(words)) => assert!(r.to_string().contains(words), "{dir}: {r}"),
                (got, _) => panic!("{dir}: {got:?}, want {want:?}"),
            }
        }
    }
}
