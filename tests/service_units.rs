//! The shipped service files agree with each other: the example config parses, every unit
//! runs only commands and names that it defines, the per-kind templates are gone, and both
//! services keep the hardening.

use std::path::{Path, PathBuf};

use offbox::config::Config;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// `Key=value` lines of a unit (comments and sections skipped).
fn settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not a setting: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_example_config_parses_and_schedules_what_the_units_run() {
    let cfg = Config::parse(
        &read("examples/offbox.toml"),
        Path::new("examples/offbox.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.schedule.contains_key("secrets") && cfg.schedule.contains_key("system"));
    for (kind, s) in &cfg.schedule {
        for t in &s.targets {
            assert!(cfg.targets.named.contains_key(t), "{kind} goes to {t}");
        }
    }
    assert!(cfg.notify.email.is_some() && !cfg.notify.syslog.is_empty());
    assert_eq!(
        cfg.service.state_dir.as_deref(),
        Some(Path::new("/var/lib/offbox"))
    );
}

#[test]
fn units_run_offbox_run_and_watch_only() {
    let names: Vec<String> = std::fs::read_dir(repo("systemd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains('@')),
        "no per-kind templates: {names:?}"
    );
    for (unit, cmd) in [
        ("run", "/usr/bin/offbox run --wait 3000"),
        ("watch", "/usr/bin/offbox watch"),
    ] {
        let s = settings(&read(&format!("systemd/offbox-{unit}.service")));
        let get = |k: &str| s.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ExecStart"), Some(cmd));
        // No --to, --kind or target name: what runs where is the config's [schedule].
        assert!(!cmd.contains("--to") && !cmd.contains("--kind"));
        assert_eq!(
            get("Environment"),
            Some("OFFBOX_CONFIG=/etc/offbox/offbox.toml")
        );
        for (k, v) in [
            ("User", "offbox"),
            ("StateDirectory", "offbox"),
            ("StateDirectoryMode", "0700"),
            ("ProtectSystem", "strict"),
            ("NoNewPrivileges", "yes"),
            ("PrivateTmp", "yes"),
            ("LimitCORE", "0"),
            ("MemoryDenyWriteExecute", "yes"),
            ("CapabilityBoundingSet", "CAP_DAC_READ_SEARCH"),
        ] {
            assert_eq!(get(k), Some(v), "offbox-{unit}.service {k}");
        }
        let timer = settings(&read(&format!("systemd/offbox-{unit}.timer")));
        assert!(timer.contains(&("WantedBy".into(), "timers.target".into())));
    }
    let watch = settings(&read("systemd/offbox-watch.timer"));
    assert!(
        watch.contains(&("OnUnitActiveSec".into(), "5min".into())),
        "{watch:?}"
    );
    let run = settings(&read("systemd/offbox-run.timer"));
    assert!(
        run.contains(&("OnCalendar".into(), "hourly".into())),
        "{run:?}"
    );
}
