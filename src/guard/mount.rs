//! The `file://` rules: the directory must be on a network filesystem (NFS, CIFS/SMB2, or
//! FUSE sshfs, by `statfs` magic and /proc/self/mountinfo), and the mount's server must not
//! be this appliance.

use std::path::{Path, PathBuf};

use nix::sys::statfs::statfs;

use super::{Refusal, Rule, SelfIdentity};
use crate::targets::TargetError;

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
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
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
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
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
pub fn server_of(m: &Mount) -> Option<String> {
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

/// Checks a `file://` directory: exists, network filesystem, not served by this appliance.
/// Returns the mount it is on.
pub fn check_dir(me: &SelfIdentity, target: &str, dir: &Path) -> Result<Mount, TargetError> {
    let canon = std::fs::canonicalize(dir).map_err(|e| TargetError::NotFound {
        target: target.to_string(),
        what: format!("directory {} ({e})", dir.display()),
    })?;
    let st = statfs(&canon).map_err(|e| TargetError::Io {
        target: target.to_string(),
        op: "statfs".into(),
        detail: e.to_string(),
        retry: crate::targets::Retry::Permanent,
    })?;
    let magic = st.filesystem_type();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();
    let m = mount_of(&mounts, &canon).cloned();
    let fstype = m.as_ref().map_or("?", |m| m.fstype.as_str()).to_string();
    let refuse = |rule: Rule, resolved: String| -> TargetError {
        Refusal {
            rule,
            target: target.to_string(),
            resolved,
        }
        .into()
    };
    // f_type is an i64 on x86_64 glibc and an i32 on other targets.
    #[allow(clippy::unnecessary_cast)]
    let m_type = magic.0 as i64;
    let network = match m_type {
        x if [NFS, CIFS, SMB2, SMB].contains(&x) => true,
        FUSE => fstype == "fuse.sshfs",
        _ => false,
    };
    let Some(m) = m.filter(|_| network) else {
        return Err(refuse(
            Rule::LocalFilesystem,
            format!(
                "{} on {fstype} (statfs magic {:#x})",
                canon.display(),
                m_type
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
    me.resolve(target, &host, 0).map_err(|e| match e {
        TargetError::Refused(mut r) => {
            r.rule = Rule::MountServedBySelf;
            r.resolved = format!(
                "{} mounted from {} ({})",
                canon.display(),
                m.source,
                r.resolved
            );
            TargetError::Refused(r)
        }
        other => other,
    })?;
    Ok(m)
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

    #[test]
    fn local_dirs_are_refused() {
        let me = SelfIdentity::load();
        for d in ["/", "/tmp", "/proc", "/dev/shm"] {
            let e = check_dir(&me, "file://x", Path::new(d)).unwrap_err();
            assert!(e.to_string().contains("local filesystem"), "{d}: {e}");
        }
    }
}
