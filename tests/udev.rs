//! The udev rules parse: every line is a comment, blank, or a rule whose fields use valid
//! udev keys with operators allowed for them and quoted values; every rule is commented and
//! tags its device for systemd with group-only access.

use std::fs;

const MATCH_KEYS: &[&str] = &[
    "ACTION",
    "DEVPATH",
    "KERNEL",
    "NAME",
    "SYMLINK",
    "SUBSYSTEM",
    "DRIVER",
    "ATTR",
    "KERNELS",
    "SUBSYSTEMS",
    "DRIVERS",
    "ATTRS",
    "TAGS",
    "TAG",
    "ENV",
    "PROGRAM",
    "RESULT",
    "TEST",
    "CONST",
];
const ASSIGN_KEYS: &[&str] = &[
    "NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "TAG", "ENV", "ATTR", "RUN", "LABEL", "GOTO",
    "IMPORT", "OPTIONS", "SECLABEL", "SYSCTL",
];

/// Splits a rule into `KEY{attr}`, operator, value.
fn fields(line: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let op_at = rest
            .find(['=', '!', '+', '-', ':'])
            .unwrap_or_else(|| panic!("no operator in {rest:?}"));
        let key = rest[..op_at].trim().to_string();
        let ops = ["==", "!=", "+=", "-=", ":=", "="];
        let op = ops
            .iter()
            .find(|o| rest[op_at..].starts_with(**o))
            .unwrap_or_else(|| panic!("bad operator in {rest:?}"));
        let after = &rest[op_at + op.len()..];
        assert!(after.starts_with('"'), "value not quoted in {line:?}");
        let end = after[1..].find('"').expect("unterminated value") + 1;
        out.push((key, op.to_string(), after[1..end].to_string()));
        rest = after[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else {
            assert!(
                rest.is_empty(),
                "fields must be separated by commas in {line:?}"
            );
        }
    }
    out
}

#[test]
fn rule_files_are_valid_udev_syntax() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/udev");
    let mut rules = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("rules"),
            "{path:?}"
        );
        let text = fs::read_to_string(&path).unwrap();
        let mut previous = "";
        for line in text.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                previous = t;
                continue;
            }
            assert!(
                previous.starts_with('#'),
                "rule without a comment above it: {t}"
            );
            let f = fields(t);
            for (key, op, _) in &f {
                let base = key.split('{').next().unwrap();
                if key.contains('{') {
                    assert!(key.ends_with('}'), "bad attribute key {key}");
                }
                match op.as_str() {
                    "==" | "!=" => assert!(MATCH_KEYS.contains(&base), "{base} cannot be matched"),
                    _ => assert!(ASSIGN_KEYS.contains(&base), "{base} cannot be assigned"),
                }
            }
            let has =
                |k: &str, o: &str, v: &str| f.iter().any(|(a, b, c)| a == k && b == o && c == v);
            assert!(
                has("TAG", "+=", "systemd"),
                "rule not tagged for systemd: {t}"
            );
            assert!(
                has("GROUP", "=", "offbox"),
                "rule does not give the offbox group: {t}"
            );
            assert!(has("MODE", "=", "0660"), "rule mode is not 0660: {t}");
            assert!(
                f.iter().any(|(_, o, _)| o == "=="),
                "rule matches nothing: {t}"
            );
            rules += 1;
        }
    }
    assert!(
        rules >= 6,
        "expected rules for the TPM, USB and PCIe HSMs, found {rules}"
    );
}

#[test]
fn the_parser_rejects_bad_syntax() {
    assert!(std::panic::catch_unwind(|| fields("KERNEL==tpmrm0")).is_err());
    assert!(std::panic::catch_unwind(|| fields("KERNEL==\"a\" GROUP=\"b\"")).is_err());
    assert_eq!(fields("ATTRS{idVendor}==\"1050\"")[0].0, "ATTRS{idVendor}");
}
