//! Restoring a video restore point: the recordings that existed at that run, each taken from
//! the archive that holds its bytes, byte-exact (size and SHA-256 checked against the
//! manifest) with its mtime. Only the archives the point needs are read, each to its end and
//! its signature checked; everything goes to a staging directory that becomes the
//! destination only when all of them passed. A missing or damaged archive fails the
//! restore with a message that names it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{list_points, tail, Point};
use crate::jobs::open::{open_head, read_head};
use crate::jobs::read::with_payload;
use crate::jobs::signature::{check_read, SignatureStatus, Trust};
use crate::jobs::target::target_err;
use crate::jobs::JobError;
use crate::keys::SlotIdentity;
use crate::payload::exclude::Excludes;
use crate::payload::unpack::{Staging, UnpackOptions};
use crate::payload::videos::extract::{extract, ExtractError};
use crate::payload::videos::Record;
use crate::targets::Target;

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct VideoRestoreOptions {
    /// The point: an archive name, an archive id prefix (8+ hex digits), or a time (RFC 3339
    /// UTC `2026-12-01T10:00:00Z`, a date `2026-12-01` meaning its end, or Unix seconds):
    /// the newest point at or before it. `None`: the newest point.
    pub at: Option<String>,
    /// Patterns of the recordings to restore (as `exclude` patterns); empty: all.
    pub only: Vec<String>,
    /// Publish without syncing to disk first.
    pub no_sync: bool,
}

/// What a video restore did.
#[derive(Debug, serde::Serialize)]
pub struct VideoRestoreSummary {
    /// The restore point's archive.
    pub point: String,
    /// Its creation time, RFC 3339.
    pub created: Option<String>,
    /// Where the recordings are.
    pub destination: PathBuf,
    /// Recordings restored.
    pub recordings: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The archives read, each with its signature status.
    pub archives: Vec<(String, SignatureStatus)>,
}

/// Restores a point of `appliance`'s video backup from `target` to `to`.
pub fn restore(
    target: &mut dyn Target,
    appliance: &str,
    custodians: &mut [&mut dyn SlotIdentity],
    trust: &Trust,
    opts: &VideoRestoreOptions,
    to: &Path,
) -> Result<VideoRestoreSummary, JobError> {
    let points = list_points(target, appliance)?;
    let point = choose(&points, opts.at.as_deref())?.clone();
    let (_, manifest) = tail::read_manifest(target, &point.name, point.size, custodians, trust)
        .map_err(|e| in_archive(&point.name, &point.name, e))?;
    let only = Excludes::new(&opts.only);
    // Archive index -> the records it holds for this restore.
    let mut by_archive: BTreeMap<u32, HashMap<String, Record>> = BTreeMap::new();
    for r in &manifest.records {
        if opts.only.is_empty() || only.matches(Path::new(&format!("/{}", r.path))) {
            by_archive
                .entry(r.archive)
                .or_default()
                .insert(r.path.clone(), r.clone());
        }
    }
    if by_archive.is_empty() && !opts.only.is_empty() {
        return Err(JobError::refused(
            "restore --only",
            crate::jobs::error::Policy::Usage,
            format!(
                "no recording of point {} matches {}",
                point.name,
                opts.only.join(", ")
            ),
        ));
    }
    let staging = Staging::create_with(
        to,
        UnpackOptions {
            no_sync: opts.no_sync,
            ..UnpackOptions::default()
        },
    )?;
    let mut summary = VideoRestoreSummary {
        point: point.name.clone(),
        created: crate::jobs::read::created_rfc3339(point.created_unix),
        destination: to.to_path_buf(),
        recordings: 0,
        bytes: 0,
        archives: Vec::new(),
    };
    for (idx, wanted) in by_archive {
        let a = manifest.archives[idx as usize].clone();
        let (n, bytes, status) = from_archive(
            target,
            &a.name,
            &a.id,
            wanted,
            staging.path(),
            custodians,
            trust,
        )
        .map_err(|e| in_archive(&point.name, &a.name, e))?;
        summary.recordings += n;
        summary.bytes += bytes;
        summary.archives.push((a.name, status));
    }
    staging.commit()?;
    Ok(summary)
}

/// Reads archive `name` to its end, restoring `wanted` under `root`.
fn from_archive(
    target: &mut dyn Target,
    name: &str,
    id: &[u8; 16],
    wanted: HashMap<String, Record>,
    root: &Path,
    custodians: &mut [&mut dyn SlotIdentity],
    trust: &Trust,
) -> Result<(u64, u64, SignatureStatus), JobError> {
    let mut input = target
        .open(name)
        .map_err(|e| target_err(&format!("reading {name}"), e))?;
    let head = read_head(&mut input)?;
    trust.precheck(&head.header)?;
    if head.header.archive_id != *id {
        return Err(JobError::io(
            format!("reading {name}"),
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "its archive id is not the one the manifest names (the file was replaced)",
            ),
        ));
    }
    let (reader, _) = open_head(head, input, custodians)?;
    let (reader, got) = with_payload(reader, |payload| Ok(extract(payload, root, wanted)))?;
    let (n, bytes) = got.map_err(|e| match e {
        ExtractError::Io(e) => JobError::io("restoring the recordings", e),
        other => JobError::Partial {
            summary: other.to_string(),
            code: 3,
            kind: "integrity".into(),
            retry: crate::targets::Retry::Permanent,
        },
    })?;
    let status = check_read(&reader, trust)?;
    Ok((n, bytes, status))
}

/// Wraps a failure with the point and the archive it concerns.
fn in_archive(point: &str, archive: &str, e: JobError) -> JobError {
    let what = if point == archive {
        format!("restore point {point}")
    } else {
        format!("restore point {point} needs archive {archive}, which failed")
    };
    JobError::Partial {
        summary: format!("{what}: {e}"),
        code: e.exit_code(),
        kind: crate::jobs::error_kind::kind(&e),
        retry: e.retry(),
    }
}

/// The point `at` designates (see [`VideoRestoreOptions::at`]).
pub(crate) fn choose<'a>(points: &'a [Point], at: Option<&str>) -> Result<&'a Point, JobError> {
    let none = || {
        JobError::refused(
            "restore --kind videos",
            crate::jobs::error::Policy::Usage,
            "there is no video archive of this appliance on the target",
        )
    };
    let Some(at) = at else {
        return points.last().ok_or_else(none);
    };
    if points.is_empty() {
        return Err(none());
    }
    if let Some(p) = points.iter().find(|p| p.name == at) {
        return Ok(p);
    }
    let lower = at.to_ascii_lowercase();
    if lower.len() >= 8 && lower.bytes().all(|c| c.is_ascii_hexdigit()) {
        if let Some(p) = points.iter().find(|p| lower.starts_with(&p.id_prefix)) {
            return Ok(p);
        }
    }
    let Some(t) = parse_time(at) else {
        return Err(JobError::refused(
            "restore --at",
            crate::jobs::error::Policy::Usage,
            format!("{at:?} is neither a video archive on the target, an archive id, nor a time (2026-12-01T10:00:00Z, 2026-12-01 or Unix seconds); `offbox backup list` shows the points"),
        ));
    };
    points
        .iter()
        .rev()
        .find(|p| p.created_unix <= t)
        .ok_or_else(|| {
            JobError::refused(
                "restore --at",
                crate::jobs::error::Policy::Usage,
                format!(
                    "there is no video restore point at or before {at}; the oldest is {}",
                    points[0].name
                ),
            )
        })
}

/// `2026-12-01T10:00:00Z`, `2026-12-01` (its last second) or Unix seconds.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let secs = match time {
        None => 86_399,
        Some(t) => {
            let mut p = t.split(':').map(|x| x.parse::<i64>().ok());
            let (h, mi, se) = (p.next()??, p.next()??, p.next()??);
            if p.next().is_some() || h > 23 || mi > 59 || se > 60 {
                return None;
            }
            h * 3600 + mi * 60 + se
        }
    };
    Some(days_from_civil(y, m, day) * 86_400 + secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("0"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-12-01T23:36:02Z"), Some(1_796_168_162));
        assert_eq!(parse_time("2026-12-01"), Some(1_796_169_599));
        assert_eq!(parse_time("2026-13-01"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn choosing() {
        let p = |name: &str, t: i64, id: &str| Point {
            name: name.into(),
            size: 1,
            created_unix: t,
            id_prefix: id.into(),
        };
        let pts = vec![p("a", 100, "0000aaaa"), p("b", 200, "0000bbbb")];
        assert_eq!(choose(&pts, None).unwrap().name, "b");
        assert_eq!(choose(&pts, Some("a")).unwrap().name, "a");
        assert_eq!(choose(&pts, Some("0000aaaa1234")).unwrap().name, "a");
        assert_eq!(choose(&pts, Some("150")).unwrap().name, "a");
        assert_eq!(choose(&pts, Some("200")).unwrap().name, "b");
        assert!(choose(&pts, Some("50")).is_err());
        assert!(choose(&[], None).is_err());
    }
}
