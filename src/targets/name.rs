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

/// Longest appliance id accepted in the config (a DNS label's limit).
pub(crate) const MAX_APPLIANCE_ID: usize = 63;

/// Whether `id` is a safe appliance id: 1 to 63 ASCII letters, digits and `-`, like a host
/// name label. A safe id is its own name on targets ([`sanitize`] keeps it unchanged).
pub(crate) fn is_safe_appliance_id(id: &str) -> bool {
    (1..=MAX_APPLIANCE_ID).contains(&id.len())
        && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// Checks a configured appliance id; the error says what is wrong and what to use instead.
pub(crate) fn check_appliance_id(id: &str) -> Result<(), String> {
    if is_safe_appliance_id(id) {
        return Ok(());
    }
    let suggestion: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(MAX_APPLIANCE_ID)
        .collect();
    Err(format!(
        "appliance_id = {id:?} is not allowed: use 1 to {MAX_APPLIANCE_ID} ASCII letters, digits and '-' (like a host name, for example {:?}). The id names this appliance's archives on shared targets, where two ids must never look alike. Choose one id per appliance and keep it: prune and cleanup act only on archives whose name carries exactly this id",
        if suggestion.is_empty() { "pam-01" } else { suggestion.as_str() }
    ))
}

/// The appliance's part of file names on a target. Injective: `[A-Za-z0-9-]` stays as it
/// is, and every other byte (`_` included) becomes `_` and two lowercase hex digits, so two
/// different ids never share a name ("pam.prod" is `pam_2eprod`, "pam_prod" is
/// `pam_5fprod`). The result has no dots, slashes or spaces, which the temporary-name parser
/// relies on. The config accepts only safe ids, which map to themselves; the encoding covers
/// the fallback ids (machine id, host name) and any other caller.
pub(crate) fn sanitize(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// Whether `s` is a possible output of [`sanitize`] (so that decoding it is unambiguous).
fn is_sanitized(s: &str) -> bool {
    if s == "_" {
        return true;
    }
    let safe = |c: u8| c.is_ascii_alphanumeric() || c == b'-';
    let lower_hex = |c: &u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if safe(b[i]) {
            i += 1;
            continue;
        }
        let Some(hex) = b
            .get(i + 1..i + 3)
            .filter(|h| b[i] == b'_' && h.iter().all(lower_hex))
        else {
            return false;
        };
        let byte = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if byte.is_none_or(safe) {
            return false;
        }
        i += 3;
    }
    !s.is_empty()
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
pub(crate) fn utc_stamp(unix: i64) -> String {
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

    /// Parses a file name; `None` for anything that is not exactly an offbox archive name:
    /// the name must be the one [`ArchiveName`]'s `Display` writes for what it parsed (no
    /// uppercase hex, no 30 February, no look-alike), with a valid appliance encoding.
    pub fn parse(name: &str) -> Option<ArchiveName> {
        let n = Self::parse_fields(name)?;
        (is_sanitized(&n.appliance) && n.to_string() == name).then_some(n)
    }

    fn parse_fields(name: &str) -> Option<ArchiveName> {
        let body = name.strip_prefix("offbox-")?.strip_suffix(".obx")?;
        let mut it = body.rsplitn(4, '-');
        let id = it.next()?;
        let stamp = it.next()?;
        let kind = it.next()?;
        let appliance = it.next()?;
        if id.len() != 8 || !id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
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
    pub(crate) fn is_of(&self, appliance: &str) -> bool {
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
            "offbox-pam-01_2eexample-system-20261118T110640Z-0123abcd.obx"
        );
        assert_eq!(ArchiveName::parse(&s), Some(n));
        for bad in [
            "x.obx",
            "offbox-a-system-20261118T110640Z-0123abcd.tar",
            "offbox-a-other-20261118T110640Z-0123abcd.obx",
            "offbox--system-20261118T110640Z-0123abcd.obx",
            "offbox-a-system-2026120T070640Z-0123abcd.obx",
            // Look-alikes that a loose parser would take: not exactly a name offbox writes.
            "offbox-pam01-system-garbage.obx",
            "offbox-pam01-system-20261118T110640Z-0123ABCD.obx",
            "offbox-pam01-system-20260230T110640Z-0123abcd.obx",
            "offbox-pam01-system-20261118T110660Z-0123abcd.obx",
            "offbox-pam.01-system-20261118T110640Z-0123abcd.obx",
            "offbox-pam_5-system-20261118T110640Z-0123abcd.obx",
            "offbox-pam_41-system-20261118T110640Z-0123abcd.obx",
            "offbox-pam_2E-system-20261118T110640Z-0123abcd.obx",
            "offbox-pam01-system-20261118T110640Z-0123abcd.obx.part",
            ".offbox-tmp.pam01.4711-a880fd02.0123456789abcdef",
        ] {
            assert_eq!(ArchiveName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sanitize_is_injective() {
        let ids = [
            "pam.prod",
            "pam_prod",
            "pam-prod",
            "pam prod",
            "pam/prod",
            "päm",
            "pam",
            "pám",
            "",
            "_",
            "_2e",
            ".",
            "pam_2eprod",
            "PAM",
            "pam-01.example",
        ];
        let names: Vec<String> = ids.iter().map(|i| sanitize(i)).collect();
        for (i, a) in names.iter().enumerate() {
            assert!(is_sanitized(a), "{a}");
            assert!(!a.contains('.') && !a.contains('/'), "{a}");
            for (j, b) in names.iter().enumerate() {
                if i != j {
                    assert_ne!(a, b, "{:?} and {:?} share a name", ids[i], ids[j]);
                }
            }
        }
        assert_eq!(sanitize("pam.prod"), "pam_2eprod");
        assert_eq!(sanitize("pam_prod"), "pam_5fprod");
        assert_eq!(sanitize("pam-01"), "pam-01", "safe ids keep their name");
        // Archives of "pam.prod" are not archives of "pam_prod", and the other way round.
        let a = ArchiveName::new("pam.prod", "system", 1_795_000_000, "0123abcd");
        let b = ArchiveName::new("pam_prod", "system", 1_795_000_000, "0123abcd");
        assert_ne!(a.to_string(), b.to_string());
        assert!(a.is_of("pam.prod") && !a.is_of("pam_prod"));
        assert!(b.is_of("pam_prod") && !b.is_of("pam.prod"));
        assert_eq!(ArchiveName::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn config_ids_must_be_safe() {
        for ok in ["pam01", "pam-prod", "A", &"a".repeat(63), "hsm-sim"] {
            assert!(check_appliance_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "pam.prod",
            "pam_prod",
            "päm",
            "",
            "pam prod",
            &"a".repeat(64),
        ] {
            let e = check_appliance_id(bad).unwrap_err();
            assert!(
                e.contains("appliance_id") && e.contains("letters, digits and '-'"),
                "{e}"
            );
        }
        assert!(check_appliance_id("pam.prod")
            .unwrap_err()
            .contains("\"pam-prod\""));
    }
}
