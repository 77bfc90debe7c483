//! Object Lock: the retention every archive is uploaded with, the bucket's lock
//! configuration (checked at connect, reported by `target check`), and deletion of every
//! version of a key once its retention has ended ("locked until …" before).

use std::time::{SystemTime, UNIX_EPOCH};

use rusty_s3::actions::{DeleteObject, GetObject, S3Action};

use super::client::{Body, Client};
use super::xml;
use crate::targets::url::{LockMode, S3Options};
use crate::targets::TargetError;

/// The retention of new archives: a mode and a duration.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retention {
    mode: LockMode,
    secs: u64,
}

impl Retention {
    /// From `lock_mode` and `retention_days` (or `retention_secs`); both or neither.
    pub(super) fn from_options(url: &str, o: &S3Options) -> Result<Option<Retention>, TargetError> {
        match (o.lock_mode, o.retention()) {
            (None, None) => Ok(None),
            (Some(mode), Some(secs)) if secs > 0 => Ok(Some(Retention { mode, secs })),
            _ => Err(TargetError::Invalid {
                target: url.into(),
                why: "set both lock_mode (COMPLIANCE or GOVERNANCE) and retention_days (at least 1), or neither".into(),
            }),
        }
    }

    /// The lock headers of an upload that begins now.
    pub(super) fn headers(&self) -> Vec<(&'static str, String)> {
        let until = now().saturating_add(self.secs as i64);
        vec![
            ("x-amz-object-lock-mode", self.mode.as_str().to_string()),
            ("x-amz-object-lock-retain-until-date", iso8601(until)),
        ]
    }
}

/// The bucket's Object Lock configuration as far as the credentials may read it.
#[derive(Debug, Clone)]
pub(super) struct BucketLock {
    /// `Some(true)`: enabled; `Some(false)`: not; `None`: the key may not read it.
    enabled: Option<bool>,
    /// The default retention ("COMPLIANCE 30 days"), if any.
    default: Option<String>,
}

/// What `target check` says about Object Lock.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LockReport {
    /// Whether the bucket has Object Lock (`None`: these credentials may not read it).
    pub bucket_lock: Option<bool>,
    /// The bucket's default retention.
    pub bucket_default_retention: Option<String>,
    /// The retention offbox sets on each archive (e.g. "COMPLIANCE 30 days").
    pub archive_retention: Option<String>,
}

/// Reads the bucket's Object Lock configuration (GetObjectLockConfiguration). This is also
/// the first signed request, so wrong credentials and a missing bucket fail here.
pub(super) fn bucket_lock(c: &Client) -> Result<BucketLock, TargetError> {
    let mut a = GetObject::new(&c.bucket, c.creds(), "");
    a.query_mut().insert("object-lock", "");
    match c.call(
        "reading the bucket's Object Lock configuration",
        a,
        &[],
        Body::Empty,
    ) {
        Ok(resp) => {
            let text = c.text("reading the Object Lock configuration", resp)?;
            let enabled = xml::first(&text, "ObjectLockEnabled").as_deref() == Some("Enabled");
            let default = xml::blocks(&text, "DefaultRetention").first().map(|d| {
                let mode = xml::first(d, "Mode").unwrap_or_default();
                match (xml::first(d, "Days"), xml::first(d, "Years")) {
                    (Some(n), _) => format!("{mode} {n} days"),
                    (None, Some(n)) => format!("{mode} {n} years"),
                    _ => mode,
                }
            });
            Ok(BucketLock {
                enabled: Some(enabled),
                default,
            })
        }
        Err(TargetError::NotFound { .. }) => Ok(BucketLock {
            enabled: Some(false),
            default: None,
        }),
        Err(TargetError::Permission { .. }) => Ok(BucketLock {
            enabled: None,
            default: None,
        }),
        Err(e) => Err(e),
    }
}

impl BucketLock {
    /// Refuses to go on when retention is configured but the bucket has no Object Lock.
    pub(super) fn require(&self, url: &str, r: &Retention) -> Result<(), TargetError> {
        match self.enabled {
            Some(true) => Ok(()),
            Some(false) => Err(TargetError::Invalid {
                target: url.into(),
                why: format!(
                    "lock_mode = \"{}\" is configured but the bucket has no Object Lock, so archives could be deleted or overwritten; use a bucket created with Object Lock enabled (it cannot be turned on later on every server), or remove lock_mode and retention_days",
                    r.mode.as_str()
                ),
            }),
            None => Err(TargetError::Permission {
                target: url.into(),
                op: "reading the bucket's Object Lock configuration".into(),
                detail: "the key may not call GetBucketObjectLockConfiguration (s3:GetBucketObjectLockConfiguration), so the lock cannot be verified; allow it in the key's policy".into(),
            }),
        }
    }

    /// The report for `target check`.
    pub(super) fn report(&self, r: Option<&Retention>) -> LockReport {
        LockReport {
            bucket_lock: self.enabled,
            bucket_default_retention: self.default.clone(),
            archive_retention: r.map(|r| {
                if r.secs % 86_400 == 0 {
                    format!("{} {} days", r.mode.as_str(), r.secs / 86_400)
                } else {
                    format!("{} {} seconds", r.mode.as_str(), r.secs)
                }
            }),
        }
    }
}

/// The versions of exactly `key` (version id, or "null").
fn versions(c: &Client, key: &str) -> Result<Vec<String>, TargetError> {
    let mut out = Vec::new();
    let (mut key_marker, mut vid_marker) = (String::new(), String::new());
    loop {
        let mut a = GetObject::new(&c.bucket, c.creds(), "");
        a.query_mut().insert("versions", "");
        a.query_mut().insert("prefix", key.to_string());
        if !key_marker.is_empty() {
            a.query_mut().insert("key-marker", key_marker.clone());
            a.query_mut()
                .insert("version-id-marker", vid_marker.clone());
        }
        let resp = c.call("listing the archive's versions", a, &[], Body::Empty)?;
        let text = c.text("listing the archive's versions", resp)?;
        for tag in ["Version", "DeleteMarker"] {
            for v in xml::blocks(&text, tag) {
                if xml::first(v, "Key").as_deref() == Some(key) {
                    out.push(xml::first(v, "VersionId").unwrap_or_else(|| "null".into()));
                }
            }
        }
        if xml::first(&text, "IsTruncated").as_deref() != Some("true") {
            return Ok(out);
        }
        key_marker = xml::first(&text, "NextKeyMarker").unwrap_or_default();
        vid_marker = xml::first(&text, "NextVersionIdMarker").unwrap_or_default();
        if key_marker.is_empty() {
            return Ok(out);
        }
    }
}

/// The retain-until date of a version, if it has one in the future.
fn locked_until(c: &Client, key: &str, version: &str) -> Result<Option<String>, TargetError> {
    let mut a = GetObject::new(&c.bucket, c.creds(), key);
    a.query_mut().insert("retention", "");
    if version != "null" {
        a.query_mut().insert("versionId", version.to_string());
    }
    let text = match c.call("reading the archive's retention", a, &[], Body::Empty) {
        Ok(resp) => c.text("reading the archive's retention", resp)?,
        // No retention on the object (or none readable): the delete itself decides.
        Err(TargetError::NotFound { .. } | TargetError::Permission { .. }) => return Ok(None),
        Err(TargetError::Io { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(until) = xml::first(&text, "RetainUntilDate") else {
        return Ok(None);
    };
    Ok(parse_iso8601(&until).filter(|t| *t > now()).map(|_| until))
}

/// Deletes one version of `key` (the current one when `version` is `None`).
pub(super) fn delete_version(
    c: &Client,
    key: &str,
    version: Option<&str>,
) -> Result<(), TargetError> {
    let mut a = DeleteObject::new(&c.bucket, c.creds(), key);
    if let Some(v) = version {
        a.query_mut().insert("versionId", v.to_string());
    }
    c.call("deleting", a, &[], Body::Empty).map(drop)
}

/// Deletes every version of `key` (the archive `name`): a versioned delete, so nothing of
/// it is left. A version still under retention stops it with [`TargetError::Locked`]
/// before anything is deleted.
pub(super) fn delete_versions(c: &Client, key: &str, name: &str) -> Result<(), TargetError> {
    let all = versions(c, key)?;
    if all.is_empty() {
        return Err(TargetError::NotFound {
            target: c.url.clone(),
            what: name.into(),
        });
    }
    for v in &all {
        if let Some(until) = locked_until(c, key, v)? {
            return Err(TargetError::Locked {
                target: c.url.clone(),
                name: name.into(),
                until,
            });
        }
    }
    for v in &all {
        match delete_version(c, key, Some(v)) {
            Ok(()) | Err(TargetError::NotFound { .. }) => {}
            Err(TargetError::Permission { detail, .. }) => {
                return Err(TargetError::Locked {
                    target: c.url.clone(),
                    name: name.into(),
                    until: format!("an unknown date (the server refused: {detail})"),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 → (year, month, day) (the proleptic Gregorian calendar).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn iso8601(t: i64) -> String {
    let (y, mo, d) = civil(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` → Unix seconds.
fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.get(..19)?;
    let num = |r: std::ops::Range<usize>| b.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    Some(days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_764_633_600), "2025-12-02T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 951_782_400, 1_764_633_601, 4_102_444_799] {
            assert_eq!(parse_iso8601(&iso8601(t)), Some(t));
        }
        assert_eq!(
            parse_iso8601("2025-12-02T00:00:00.123Z"),
            Some(1_764_633_600)
        );
        assert_eq!(parse_iso8601("junk"), None);
    }
}
