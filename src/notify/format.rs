//! What an event looks like on each channel: an RFC 5424 message with `[offbox@32473 ...]`
//! structured data (formatted by the `syslog_fmt` crate, which escapes `"`, `\` and `]` in
//! SD-PARAM values), a CEF line, the local journal line, and the email subject and body.
//!
//! 32473 is the private enterprise number that RFC 5612 reserves for documentation
//! examples; a deployment that registers its own PEN changes [`SD_ID`].

use syslog_fmt::v5424::{Config, Msg};
use syslog_fmt::{Facility, Severity};

use super::{Event, EventKind};

/// The SD-ID of offbox's structured data element.
pub(crate) const SD_ID: &str = "offbox@32473";
/// APP-NAME in every message.
pub(crate) const APP_NAME: &str = "offbox";

/// The syslog severity of an event.
pub(crate) fn severity(kind: EventKind) -> Severity {
    match kind {
        EventKind::KeyDeviceFailure | EventKind::IntegrityFailure => Severity::Crit,
        EventKind::TargetLost
        | EventKind::TargetFull
        | EventKind::BackupFailed
        | EventKind::SelfcheckFailed => Severity::Err,
        EventKind::CapacityLow | EventKind::Stale | EventKind::SelfcheckDegraded => {
            Severity::Warning
        }
        EventKind::TargetRecovered | EventKind::CapacityOk | EventKind::Fresh | EventKind::Test => {
            Severity::Notice
        }
        EventKind::BackupSucceeded => Severity::Info,
    }
}

/// The CEF severity (0 to 10) of an event.
pub(crate) fn cef_severity(kind: EventKind) -> u8 {
    match severity(kind) {
        Severity::Emerg | Severity::Alert | Severity::Crit => 9,
        Severity::Err => 7,
        Severity::Warning => 5,
        Severity::Notice => 3,
        Severity::Info | Severity::Debug => 1,
    }
}

/// A short human title: `target lost`.
pub fn title(kind: EventKind) -> String {
    kind.id().replace('_', " ")
}

/// RFC 3339 UTC time of Unix seconds, as RFC 5424 wants it: `2026-11-02T10:00:00Z`.
pub(crate) fn rfc3339(unix: i64) -> String {
    let s = crate::targets::name::utc_stamp(unix); // YYYYMMDDTHHMMSSZ
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    )
}

/// The message of a reminder: says the condition is still there, and since when.
pub(crate) fn reminder_message(message: &str, since: i64) -> String {
    format!("still (since {}): {message}", rfc3339(since))
}

/// RFC 5424 HOSTNAME: printable ASCII without spaces, at most 255 characters; `-` if empty.
fn hostname(appliance: &str) -> String {
    let h: String = appliance
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(255)
        .collect();
    if h.is_empty() {
        "-".into()
    } else {
        h
    }
}

/// The structured data parameters of an event, in a fixed order; absent fields are left out.
pub(crate) fn sd_params(event: &Event) -> Vec<(&'static str, &str)> {
    let mut p = vec![("event", event.kind.id())];
    let opt = [
        ("kind", &event.backup_kind),
        ("target", &event.target),
        ("archive", &event.archive),
        ("error_kind", &event.error_kind),
        ("retry", &event.retry),
    ];
    for (name, value) in opt {
        if let Some(v) = value {
            p.push((name, v.as_str()));
        }
    }
    p
}

/// One RFC 5424 message (without transport framing): PRI, version 1, the event's time,
/// HOSTNAME = the appliance id, APP-NAME `offbox`, PROCID, MSGID = the event id, the
/// `[offbox@32473 ...]` element, and the message (UTF-8, with a BOM as RFC 5424 §6.4 asks).
/// With `cef`, the MSG is the CEF line instead (no BOM, and no structured data: the CEF
/// extension carries the fields).
pub(crate) fn rfc5424(event: &Event, appliance: &str, facility: u8, cef: bool) -> Vec<u8> {
    let host = hostname(appliance);
    let pid = std::process::id().to_string();
    let formatter = Config {
        facility: Facility::try_from(facility).unwrap_or(Facility::Daemon),
        hostname: Some(&host),
        app_name: Some(APP_NAME),
        proc_id: Some(&pid),
    }
    .into_formatter();
    let mut out = Vec::new();
    let ts = rfc3339(event.at);
    let sev = severity(event.kind);
    let msgid = Some(event.kind.id());
    // Writing to a Vec cannot fail.
    let _ = if cef {
        let line = cef_line(event, appliance);
        formatter.write_without_data(
            &mut out,
            sev,
            ts,
            Msg::NonUnicodeBytes(line.as_bytes()),
            msgid,
        )
    } else {
        let params = sd_params(event);
        formatter.write_with_data(
            &mut out,
            sev,
            ts,
            event.message.as_str(),
            msgid,
            [(SD_ID, params)],
        )
    };
    out
}

/// Escapes a CEF header field: `\` and `|`; line breaks become spaces.
fn cef_header(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '|' => o.push_str("\\|"),
            '\r' | '\n' => o.push(' '),
            _ => o.push(c),
        }
    }
    o
}

/// Escapes a CEF extension value: `\`, `=`, and line breaks as `\n` / `\r`.
fn cef_value(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '=' => o.push_str("\\="),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            _ => o.push(c),
        }
    }
    o
}

/// The CEF line: `CEF:0|offbox|offbox|VERSION|event_id|title|severity|extension`. The
/// extension has `rt` (milliseconds), `dvchost` (the appliance), `cat` (the event id), `msg`,
/// and the custom strings `cs1` backupKind, `cs2` target, `cs3` archive, `cs4` errorKind,
/// `cs5` retry (each with its `csNLabel`) when present.
pub(crate) fn cef_line(event: &Event, appliance: &str) -> String {
    let mut ext = vec![
        format!("rt={}", event.at.saturating_mul(1000)),
        format!("dvchost={}", cef_value(appliance)),
        format!("cat={}", event.kind.id()),
        format!("msg={}", cef_value(&event.message)),
    ];
    let custom = [
        ("backupKind", &event.backup_kind),
        ("target", &event.target),
        ("archive", &event.archive),
        ("errorKind", &event.error_kind),
        ("retry", &event.retry),
    ];
    for (n, (label, value)) in custom.iter().enumerate() {
        if let Some(v) = value {
            let i = n + 1;
            ext.push(format!("cs{i}Label={label} cs{i}={}", cef_value(v)));
        }
    }
    format!(
        "CEF:0|offbox|offbox|{}|{}|{}|{}|{}",
        cef_header(env!("CARGO_PKG_VERSION")),
        event.kind.id(),
        cef_header(&title(event.kind)),
        cef_severity(event.kind),
        ext.join(" ")
    )
}

/// The event's fields as `key=value` text (for the journal line and the email body).
fn fields(event: &Event) -> Vec<String> {
    sd_params(event)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// The local journal line (BSD syslog to /dev/log, facility daemon): `<PRI>offbox[PID]:
/// EVENT target_lost: message (event=... target=...)`. Line breaks become spaces.
pub(crate) fn journal_line(event: &Event) -> String {
    let pri = 3 * 8 + severity(event.kind) as u8;
    let line = format!(
        "<{pri}>offbox[{}]: EVENT {}: {} ({})",
        std::process::id(),
        event.kind.id(),
        event.message,
        fields(event).join(" ")
    );
    line.replace(['\n', '\r'], " ")
}

/// The email subject: `offbox APPLIANCE: target lost`.
pub(crate) fn email_subject(event: &Event, appliance: &str, reminder: bool) -> String {
    let s = format!("offbox {appliance}: {}", title(event.kind));
    let s = if reminder {
        format!("{s} (reminder)")
    } else {
        s
    };
    s.replace(['\n', '\r'], " ")
}

/// The plain-text email body: the message, then one line per field.
pub(crate) fn email_body(event: &Event, appliance: &str) -> String {
    let mut b = format!("{}\n\n", event.message);
    b.push_str(&format!("appliance: {appliance}\n"));
    b.push_str(&format!("time: {}\n", rfc3339(event.at)));
    for (k, v) in sd_params(event) {
        b.push_str(&format!("{k}: {v}\n"));
    }
    b.push_str("\nSent by offbox; see the Monitoring section of the operator guide.\n");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            kind: EventKind::TargetLost,
            at: 1_790_000_000,
            backup_kind: Some("system".into()),
            target: Some("dr\"site]\\x".into()),
            archive: None,
            error_kind: Some("target.unreachable".into()),
            retry: Some("temporary".into()),
            message: "cannot reach | the = target\nretry later".into(),
        }
    }

    #[test]
    fn time_is_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_790_000_000), "2026-09-21T14:13:20Z");
    }

    #[test]
    fn rfc5424_with_escaped_structured_data() {
        let m = String::from_utf8(rfc5424(&event(), "appl-1", 3, false)).unwrap();
        let pid = std::process::id();
        // daemon (3) * 8 + err (3) = 27
        assert_eq!(
            m,
            format!("<27>1 2026-09-21T14:13:20Z appl-1 offbox {pid} target_lost [offbox@32473 event=\"target_lost\" kind=\"system\" target=\"dr\\\"site\\]\\\\x\" error_kind=\"target.unreachable\" retry=\"temporary\"] \u{feff}cannot reach | the = target\nretry later")
        );
    }

    #[test]
    fn rfc5424_facility_and_hostname() {
        let mut e = event();
        e.kind = EventKind::BackupSucceeded;
        e.target = None;
        e.backup_kind = None;
        e.error_kind = None;
        e.retry = None;
        e.archive = Some("a.obx".into());
        let m = String::from_utf8(rfc5424(&e, "bad host", 16, false)).unwrap();
        // local0 (16) * 8 + info (6) = 134; the space in the host name is replaced.
        assert!(
            m.starts_with("<134>1 2026-09-21T14:13:20Z bad_host offbox "),
            "{m}"
        );
        assert!(
            m.contains(
                " backup_succeeded [offbox@32473 event=\"backup_succeeded\" archive=\"a.obx\"] "
            ),
            "{m}"
        );
    }

    #[test]
    fn cef_escaping() {
        let l = cef_line(&event(), "appl=1");
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(
            l,
            format!("CEF:0|offbox|offbox|{v}|target_lost|target lost|7|rt=1790000000000 dvchost=appl\\=1 cat=target_lost msg=cannot reach | the \\= target\\nretry later cs1Label=backupKind cs1=system cs2Label=target cs2=dr\"site]\\\\x cs4Label=errorKind cs4=target.unreachable cs5Label=retry cs5=temporary")
        );
        assert_eq!(cef_header("a|b\\c\nd"), "a\\|b\\\\c d");
    }

    #[test]
    fn cef_in_rfc5424_has_no_bom_and_no_sd() {
        let m = String::from_utf8(rfc5424(&event(), "appl-1", 3, true)).unwrap();
        let pid = std::process::id();
        assert!(
            m.starts_with(&format!(
                "<27>1 2026-09-21T14:13:20Z appl-1 offbox {pid} target_lost - CEF:0|offbox|"
            )),
            "{m}"
        );
        assert!(!m.contains('\u{feff}'));
    }

    #[test]
    fn journal_line_is_one_line() {
        let l = journal_line(&event());
        assert!(l.starts_with("<27>offbox["), "{l}");
        assert!(l.contains("]: EVENT target_lost: cannot reach | the = target retry later (event=target_lost kind=system"), "{l}");
        assert!(!l.contains('\n'));
    }

    #[test]
    fn email_text() {
        assert_eq!(
            email_subject(&event(), "appl-1", false),
            "offbox appl-1: target lost"
        );
        assert_eq!(
            email_subject(&event(), "appl-1", true),
            "offbox appl-1: target lost (reminder)"
        );
        let b = email_body(&event(), "appl-1");
        assert!(b.starts_with("cannot reach | the = target\nretry later\n\nappliance: appl-1\ntime: 2026-09-21T14:13:20Z\nevent: target_lost\nkind: system\n"), "{b}");
        assert!(reminder_message("m", 0).starts_with("still (since 1970-01-01T00:00:00Z): m"));
    }
}
