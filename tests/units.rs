//! The shipped systemd units stay hardened and valid: `systemd-analyze security
//! --offline=true` scores every service at or below 2.0 ("OK"), and `systemd-analyze verify`
//! finds nothing to say about any unit. Verify runs on copies whose ExecStart= is the binary
//! this build made and with the manual pages it generates on MANPATH, since it checks that
//! both exist. Needs systemd-analyze and man (tests/deps.sh installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The highest exposure score a service may have.
const MAX_EXPOSURE: f64 = 2.0;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// Every unit file shipped, by name.
fn units() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(units_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".service") || n.ends_with(".timer"))
        .collect();
    names.sort();
    names
}

/// The overall exposure of `systemd-analyze security` output.
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    line.rsplit_once(": ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn every_service_scores_ok() {
    let services: Vec<String> = units()
        .into_iter()
        .filter(|u| u.ends_with(".service"))
        .collect();
    for want in [
        "offbox-run.service",
        "offbox-watch.service",
        "offbox-selfcheck.service",
    ] {
        assert!(services.iter().any(|s| s == want), "{want} is missing");
    }
    let mut scores = Vec::new();
    for unit in &services {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(units_dir().join(unit))
            .output()
            .expect("systemd-analyze (run tests/deps.sh)");
        let text = String::from_utf8_lossy(&out.stdout);
        let score = exposure(&text).unwrap_or_else(|| {
            panic!(
                "{unit}: no score in\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        eprintln!("{unit}: {score}");
        scores.push((unit.clone(), score, text.into_owned()));
    }
    for (unit, score, text) in &scores {
        assert!(
            *score <= MAX_EXPOSURE,
            "{unit} scores {score} > {MAX_EXPOSURE}:\n{text}"
        );
    }
}

#[test]
fn exposure_is_read_from_the_summary_line() {
    let text = "  NAME  DESCRIPTION  EXPOSURE\n\u{2717} PrivateNetwork=  x  0.5\n\n\
                \u{2192} Overall exposure level for offbox-run.service: 1.7 OK \u{1f642}\n";
    assert_eq!(exposure(text), Some(1.7));
    assert_eq!(exposure("no summary"), None);
}

#[test]
fn every_unit_verifies_clean() {
    let bin = env!("CARGO_BIN_EXE_offbox");
    let work = tempfile::tempdir().unwrap();
    let man1 = work.path().join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    offbox::write_manpages(&man1, "offbox").unwrap();
    let dir = work.path().join("units");
    std::fs::create_dir(&dir).unwrap();
    let mut files = Vec::new();
    for unit in units() {
        let text = std::fs::read_to_string(units_dir().join(&unit)).unwrap();
        let path = dir.join(&unit);
        std::fs::write(&path, text.replace("/usr/bin/offbox", bin)).unwrap();
        files.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .env("MANPATH", work.path().join("man"))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("systemd-analyze (run tests/deps.sh)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
