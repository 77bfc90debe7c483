//! Archive names on a target: `offbox-<appliance>-<kind>-<YYYYMMDDTHHMMSSZ>-<id8>.obx`.
//!
//! The name carries what listing and retention need (appliance, kind, UTC time, a prefix
//! of the archive id), so `backup list` and `prune` never open an archive.

use std::fmt;

/// A parsed archive name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveName {
    /// The appliance id, sanitized.
    pub appliance: String,
    /// The archive kind (system, secrets, videos).
    pub kind: String,
    /// Creation time, Unix seconds (UTC).
    pub created_unix: i64,
    /// The first 8 hex digits of the archive id.
    pub id_prefix: String,
}

/// Keeps `[A-Za-z0-9_-]`, replaces anything else by `_` (no dots, slashes or spaces in
/// names, and the temporary-name parser can rely on the absence of dots).
pub fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn utc_stamp(unix: i64) -> String {
    let (y, mo, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

fn parse_stamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y as i64, mo, d) * 86_400 + (h * 3600 + mi * 60 + se) as i64)
}

impl ArchiveName {
    /// A name for a new archive.
    pub fn new(appliance: &str, kind: &str, created_unix: i64, archive_id_hex: &str) -> Self {
        ArchiveName {
            appliance: sanitize(appliance),
            kind: kind.to_string(),
            created_unix,
            id_prefix: archive_id_hex.chars().take(8).collect(),
        }
    }

    /// Parses a file name; `None` for anything that is not an offbox archive.
    pub fn parse(name: &str) -> Option<ArchiveName> {
        let body = name.strip_prefix("offbox-")?.strip_suffix(".obx")?;
        let mut it = body.rsplitn(4, '-');
        let id = it.next()?;
        let stamp = it.next()?;
        let kind = it.next()?;
        let appliance = it.next()?;
        if id.len() != 8 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        if !matches!(kind, "system" | "secrets" | "videos") || appliance.is_empty() {
            return None;
        }
        Some(ArchiveName {
            appliance: appliance.to_string(),
            kind: kind.to_string(),
            created_unix: parse_stamp(stamp)?,
            id_prefix: id.to_string(),
        })
    }

    /// Whether this archive belongs to `appliance`.
    pub fn is_of(&self, appliance: &str) -> bool {
        self.appliance == sanitize(appliance)
    }
}

impl fmt::Display for ArchiveName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offbox-{}-{}-{}-{}.obx",
            self.appliance,
            self.kind,
            utc_stamp(self.created_unix),
            self.id_prefix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_000_000), "20261118T110640Z");
        for t in [0, 951_782_400, 1_795_000_000, 4_102_444_799] {
            assert_eq!(parse_stamp(&utc_stamp(t)), Some(t));
        }
    }

    #[test]
    fn names_round_trip() {
        let n = ArchiveName::new("pam-01.example", "system", 1_795_000_000, "0123abcdef");
        let s = n.to_string();
        assert_eq!(
            s,
            "offbox-pam-01_example-system-20261118T110640Z-0123abcd.obx"
        );
        assert_eq!(ArchiveName::parse(&s), Some(n));
        for bad in [
            "x.obx",
            "offbox-a-system-20261118T110640Z-0123abcd.tar",
            "offbox-a-other-20261118T110640Z-0123abcd.obx",
            "offbox--system-20261118T110640Z-0123abcd.obx",
            "offbox-a-system-2026120T070640Z-0123abcd.obx",
        ] {
            assert_eq!(ArchiveName::parse(bad), None, "{bad}");
        }
    }
}
