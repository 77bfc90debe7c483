//! What commands print: one confirmation line (or JSON with --json) per command, on stderr
//! when stdout carries data.

use std::path::Path;

use crate::config::Config;
use crate::harden::Hardening;
use crate::jobs::backup::BackupSummary;
use crate::jobs::read::ReadSummary;
use crate::jobs::recovery::CeremonyResult;
use crate::jobs::restore::RestoreSummary;
use crate::keys::recovery::RecoveryPublicKey;
use crate::keys::{DeviceStatus, KeyVersion};
use crate::progress::human_bytes;

fn json_line<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("summaries serialize")
}

/// `backup create`: the archive went to stdout, so everything goes to stderr.
pub fn backed_up(s: &BackupSummary, json: bool) {
    for n in &s.notices {
        eprintln!("offbox: warning: {n}");
    }
    if json {
        eprintln!("{}", json_line(s));
        return;
    }
    eprintln!(
        "offbox: backup complete: kind={} archive={} in={} out={} time={:.2}s rate={}/s entries={} slots={}{}{}",
        s.kind,
        s.archive_id,
        human_bytes(s.bytes_in),
        human_bytes(s.bytes_out),
        s.seconds,
        human_bytes(s.bytes_per_second as u64),
        s.entries,
        s.slots.join(","),
        if s.notices.is_empty() {
            String::new()
        } else {
            format!(" warnings={}", s.notices.len())
        },
        if s.changed_while_read.count == 0 {
            String::new()
        } else {
            format!(" changed_while_read={}", s.changed_while_read)
        }
    );
}

/// `verify`.
pub fn verified(s: &ReadSummary, json: bool) {
    if json {
        println!("{}", json_line(s));
        return;
    }
    println!(
        "offbox: verify OK: kind={} archive={} appliance={} created={} archive_bytes={} payload_bytes={} entries={} slots={} signature {}",
        s.kind,
        s.archive_id,
        s.appliance_id,
        created(&s.created, s.created_unix),
        s.archive_bytes,
        s.payload_bytes,
        s.entries,
        s.slots.join(","),
        s.signature.as_ref().map_or("not checked".to_string(), |x| x.to_string())
    );
}

/// `verify --keyless`.
pub fn verified_keyless(s: &crate::jobs::signature::KeylessSummary, json: bool) {
    if json {
        println!("{}", json_line(s));
        return;
    }
    println!(
        "offbox: keyless verify OK: kind={} archive={} appliance={} created={} segments={} archive_bytes={} slots={} signature {}",
        s.kind,
        s.archive_id,
        s.appliance_id,
        created(&s.created, s.created_unix),
        s.segments,
        s.archive_bytes,
        s.slots.join(","),
        s.signature
    );
}

/// The creation time as RFC 3339, or `unix:N` for a time RFC 3339 cannot show.
fn created(rfc3339: &Option<String>, unix: i64) -> String {
    rfc3339.clone().unwrap_or_else(|| format!("unix:{unix}"))
}

/// A command line that does not parse (or `--help`, `--version`): clap's own text, and with
/// `--json` among the arguments the same `{"error":…}` line as every other failure
/// (`kind` `usage`, exit code 2). Returns the exit code.
pub fn usage_error(e: &clap::Error) -> i32 {
    let code = e.exit_code();
    let _ = e.print();
    if e.use_stderr() && json_asked(std::env::args_os().skip(1)) {
        let text = e.render().to_string();
        let message = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        let v = serde_json::json!({"error": {
            "kind": "usage",
            "retry": crate::targets::Retry::Permanent,
            "hint": "fix the command line; `offbox help COMMAND` shows its options",
            "message": message,
            "exit_code": code,
        }});
        eprintln!("{v}");
    }
    code
}

/// Whether `--json` is among the arguments (before a `--` that ends the options).
fn json_asked(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.take_while(|a| a != "--").any(|a| a == "--json")
}

/// `keys export-public`: what was written where (on stderr when it went to standard output).
pub fn exported_public(key_id: &str, output: &Path, json: bool) {
    let to = if output == Path::new("-") {
        "standard output".to_string()
    } else {
        output.display().to_string()
    };
    let v = serde_json::json!({"exported": {"signing_key_id": key_id, "output": to}});
    let line = format!(
        "offbox: wrote the public signing key {key_id} (PEM) to {to}; give it to the backup server for `offbox verify --keyless --public-key FILE`"
    );
    match (json, output == Path::new("-")) {
        (true, true) => eprintln!("{v}"),
        (true, false) => println!("{v}"),
        (false, _) => eprintln!("{line}"),
    }
}

/// `keys retire`.
pub fn retired(version: u32, json: bool) {
    if json {
        println!("{}", serde_json::json!({"retired": version}));
        return;
    }
    println!("offbox: key-encryption key version {version} retired; archives that used it open only through their recovery slot now");
}

/// `keys retire N` without `--yes`: one line per archive that needs version N on stdout
/// (`would need the recovery shares` or `would be UNREADABLE`, the target, the archive),
/// the targets that could not be read and a summary on stderr.
pub fn retire_plan(p: &crate::jobs::retire::RetirePlan, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "retire": p, "dry_run": true }));
        return;
    }
    for a in &p.affected {
        let what = if a.recovery_slot {
            "would need the recovery shares"
        } else {
            "would be UNREADABLE"
        };
        println!("{what}\t{}\t{}", a.target, a.name);
    }
    for u in &p.unchecked {
        eprintln!(
            "offbox: warning: target {} was not checked: {}",
            u.target, u.error
        );
    }
    let lost = p.affected.iter().filter(|a| !a.recovery_slot).count();
    eprintln!(
        "offbox: keys retire {v} (dry run, nothing was destroyed): {n} archive(s) of this appliance on {c} checked target(s) use key-encryption key version {v}{lost}{unchecked}. Run again with --yes to destroy it",
        v = p.version,
        n = p.affected.len(),
        c = p.checked.len(),
        lost = match (p.affected.len(), lost) {
            (0, _) => String::new(),
            (_, 0) => "; each would then open ONLY through its recovery slot, with the custodians' shares".into(),
            (_, l) => format!("; {l} of them have no recovery slot and would become UNREADABLE"),
        },
        unchecked = if p.checked.is_empty() && p.unchecked.is_empty() {
            "; no [targets.NAME] is configured, so archives kept elsewhere were not checked (`offbox verify ARCHIVE` names the slots of one)".to_string()
        } else if p.unchecked.is_empty() {
            String::new()
        } else {
            format!(
                "; {} target(s) could not be checked (above), and archives kept elsewhere are not known",
                p.unchecked.len()
            )
        },
    );
}

/// `decrypt` and `recover --output`.
pub fn decrypted(s: &ReadSummary, output: &Path, json: bool) {
    if json {
        eprintln!("{}", json_line(s));
        return;
    }
    eprintln!(
        "offbox: decrypted: kind={} archive={} payload_bytes={} signature {} to {}",
        s.kind,
        s.archive_id,
        s.payload_bytes,
        s.signature
            .as_ref()
            .map_or("not checked".to_string(), |x| x.to_string()),
        if output == Path::new("-") {
            "standard output".to_string()
        } else {
            output.display().to_string()
        }
    );
}

/// `restore` and `recover --to`.
pub fn restored(s: &RestoreSummary, json: bool) {
    for w in s.extract.warnings() {
        eprintln!("offbox: warning: {w}");
    }
    if json {
        println!("{}", json_line(s));
        return;
    }
    println!(
        "offbox: restore complete: kind={} archive={} payload_bytes={} signature {} to {}",
        s.read.kind,
        s.read.archive_id,
        s.read.payload_bytes,
        s.signature,
        s.restored_to.display()
    );
}

/// `keys init`.
pub fn key_created(v: &KeyVersion, json: bool) {
    if json {
        println!("{}", json_line(v));
        return;
    }
    println!(
        "offbox: key-encryption key version {} created ({}); it never leaves the device",
        v.version, v.location
    );
}

/// `keys status`.
pub fn status(s: &DeviceStatus, cfg: &Config, json: bool) {
    let recovery = cfg
        .recovery
        .public_key
        .as_deref()
        .and_then(|p| RecoveryPublicKey::parse(p).ok());
    if json {
        let v = serde_json::json!({
            "status": s,
            "recovery_key_id": recovery.map(|r| crate::format::header::hex(&r.key_id())),
        });
        println!("{v}");
        return;
    }
    println!("backend:  {}", s.backend);
    println!("module:   {}", s.module);
    println!("device:   {}", s.device);
    if s.versions.is_empty() {
        println!("KEK:      missing (run `offbox keys init`)");
    }
    for v in &s.versions {
        println!(
            "KEK:      version {}{} at {}",
            v.version,
            if v.current { " (current)" } else { "" },
            v.location
        );
    }
    match recovery {
        Some(r) => println!("recovery: key {}", crate::format::header::hex(&r.key_id())),
        None => println!("recovery: none configured (run `offbox recovery init`)"),
    }
}

/// `recovery verify-shares`.
pub fn shares_ok(key_id: &str, indexes: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "key_id": key_id, "shares": indexes})
        );
        return;
    }
    println!("offbox: shares {indexes} rebuild recovery key {key_id}: OK (nothing was written)");
}

/// `recovery init` / `rotate`: what each custodian must do.
pub fn ceremony(
    r: &CeremonyResult,
    old: Option<&RecoveryPublicKey>,
    h: &Hardening,
    config: &Path,
    json: bool,
) {
    if json {
        println!("{}", json_line(r));
        return;
    }
    println!(
        "offbox: recovery key {} created; {} of {} shares open it.",
        r.key_id,
        r.threshold,
        r.share_files.len()
    );
    println!(
        "checked: {} different {}-share subsets rebuild the key.",
        r.subsets_checked, r.threshold
    );
    println!(
        "memory locked: {}, core dumps off: {}",
        h.memory_locked, h.no_core_dumps
    );
    println!(
        "public key recorded in {}: {}",
        config.display(),
        r.public_key
    );
    if let Some(old) = old {
        println!(
            "ROTATED: archives made before now still need the OLD shares (key {}); keep them until those archives expire.",
            crate::format::header::hex(&old.key_id())
        );
    }
    println!();
    println!("Custodians, each of you:");
    for f in &r.share_files {
        println!(
            "  - take {} (print it, or copy it to your own offline medium),",
            f.display()
        );
    }
    println!("  - check it at a drill: offbox recovery verify-shares --share FILE ...,");
    println!("  - keep it sealed and offline; never send it by email or chat.");
    println!("Security officer: once every custodian holds a copy, securely delete the share files here (shred -u).");
}

#[cfg(test)]
mod tests {
    use super::json_asked;

    #[test]
    fn json_is_asked_only_as_an_option() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(json_asked(
            args(&["--json", "verify", "--bogus"]).into_iter()
        ));
        assert!(json_asked(args(&["verify", "--json"]).into_iter()));
        assert!(!json_asked(args(&["verify", "a.obx"]).into_iter()));
        assert!(!json_asked(args(&["verify", "--", "--json"]).into_iter()));
    }

    #[test]
    fn created_is_rfc3339_or_says_unix() {
        assert_eq!(
            super::created(&Some("2026-12-01T00:00:00Z".into()), 1),
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(super::created(&None, -5), "unix:-5");
    }
}
