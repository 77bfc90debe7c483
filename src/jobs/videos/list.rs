//! The video chains on a target, for `backup list`: each full with its increments, their
//! sizes and dates, read from the authenticated headers (two small reads an archive, no
//! key).

use super::{list_points, tail};
use crate::jobs::signature::Trust;
use crate::jobs::JobError;
use crate::targets::Target;

/// One archive of a chain.
#[derive(Debug, serde::Serialize)]
pub struct Link {
    /// The archive.
    pub name: String,
    /// Position in the chain (0: the full).
    pub seq: u32,
    /// Size in bytes.
    pub size: u64,
    /// Creation time, RFC 3339.
    pub created: Option<String>,
    /// How many other archives its restore point needs.
    pub depends_on: usize,
}

/// One chain: a full and its increments, oldest first.
#[derive(Debug, serde::Serialize)]
pub struct VideoChain {
    /// The full's archive id (hex).
    pub base: String,
    /// Its archives.
    pub links: Vec<Link>,
    /// Their total size.
    pub bytes: u64,
}

/// Archives whose header could not be checked: (name, why).
pub type Unreadable = Vec<(String, String)>;

/// The chains of `appliance`, oldest first, and the archives whose header could not be
/// checked.
pub fn chains(
    target: &mut dyn Target,
    appliance: &str,
    trust: &Trust,
) -> Result<(Vec<VideoChain>, Unreadable), JobError> {
    let points = list_points(target, appliance)?;
    let mut chains: Vec<VideoChain> = Vec::new();
    let mut bad = Vec::new();
    for p in points {
        let h = match tail::read_header(target, &p.name, p.size, trust) {
            Ok(h) => h,
            Err(e) => {
                bad.push((p.name, e.to_string()));
                continue;
            }
        };
        let c = h.chain.expect("video headers carry a chain");
        let base = crate::format::header::hex(&c.base);
        let link = Link {
            name: p.name,
            seq: c.seq,
            size: p.size,
            created: crate::jobs::read::created_rfc3339(p.created_unix),
            depends_on: c.depends_on.len(),
        };
        match chains.iter_mut().find(|ch| ch.base == base) {
            Some(ch) => {
                ch.bytes += link.size;
                ch.links.push(link);
            }
            None => chains.push(VideoChain {
                base,
                bytes: link.size,
                links: vec![link],
            }),
        }
    }
    Ok((chains, bad))
}
