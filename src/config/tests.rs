//! Tests of the config file: parsing, the range checks with the key they name, and defaults.
use super::*;

#[test]
fn unknown_keys_are_rejected() {
    let e = Config::parse(
        "[keys]\nbackend = \"pkcs11\"\nbakend = 1\n",
        Path::new("t.toml"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `bakend`"), "{e}");
}

#[test]
fn unsafe_appliance_ids_are_refused() {
    let base = "[keys]\nbackend = \"tpm\"\n[keys.tpm]\ntcti = \"device:/dev/tpmrm0\"\n";
    for id in ["pam.prod", "pam_prod", "päm"] {
        let text = format!("appliance_id = {id:?}\n{base}");
        let e = Config::parse(&text, Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("appliance_id"), "{e}");
    }
    let text = format!("appliance_id = \"pam-prod\"\n[service]\nstate_dir = \"/x\"\n{base}");
    let cfg = Config::parse(&text, Path::new("t.toml")).unwrap();
    assert_eq!(cfg.appliance_id(), "pam-prod");
    assert_eq!(cfg.service.state_dir, Some(PathBuf::from("/x")));
}

const BASE: &str = "[keys]\nbackend = \"pkcs11\"\n[keys.pkcs11]\nmodule = \"/nonexistent.so\"\ntoken_label = \"t\"\n";

fn parse(extra: &str) -> Result<Config, ConfigError> {
    Config::parse(&format!("{extra}\n{BASE}"), Path::new("t.toml"))
}

fn parse_err(extra: &str) -> String {
    parse(extra).unwrap_err().to_string()
}

#[test]
fn notify_section_is_validated_with_its_key() {
    assert_eq!(parse("").unwrap().notify.remind_after_hours, 24.0);
    assert_eq!(
        parse_err("[notify]\nremind_after_hours = 9000"),
        "the config t.toml is invalid: notify.remind_after_hours = 9000 is out of range; it must be 0 (no reminders) to 8760 hours; fractions are allowed"
    );
    let e = parse_err(
        "[notify.email]\nserver = \"s\"\ntls = \"starttls\"\nfrom = \"a@b\"\nto = [\"x\"]",
    );
    assert!(
        e.contains("notify.email.to = \"x\" is out of range; each entry must be one email address"),
        "{e}"
    );
    let e = parse_err("[notify]\nfoo = 1");
    assert!(
        e.contains("unknown field `foo`") && e.contains("[notify]"),
        "{e}"
    );
}

#[test]
fn defaults_are_valid() {
    let c = parse("").unwrap();
    assert_eq!(c.backup.segment_size, crate::format::DEFAULT_SEGMENT_SIZE);
    assert_eq!((c.backup.zstd_level, c.backup.threads), (1, 0));
}

#[test]
fn segment_size_is_checked() {
    assert_eq!(
        parse_err("[backup]\nsegment_size = 1"),
        "the config t.toml is invalid: backup.segment_size = 1 is out of range; it must be 4096 to 16777216 bytes (4 KiB to 16 MiB; the default is 1048576)"
    );
    assert!(parse_err("[backup]\nsegment_size = 4294967295").contains(
        "backup.segment_size = 4294967295 is out of range; it must be 4096 to 16777216 bytes"
    ));
    assert!(parse_err("[backup]\nsegment_size = 4095").contains("backup.segment_size = 4095 "));
    assert!(
        parse_err("[backup]\nsegment_size = 16777217").contains("backup.segment_size = 16777217 ")
    );
    for ok in [4096, 1 << 20, 16 << 20] {
        let c = parse(&format!("[backup]\nsegment_size = {ok}")).unwrap();
        assert_eq!(c.backup.segment_size, ok);
    }
    // Beyond u32: the TOML parser names the key.
    let e = parse_err("[backup]\nsegment_size = 4294967296");
    assert!(e.contains("segment_size"), "{e}");
}

#[test]
fn zstd_level_is_checked() {
    let e = parse_err("[backup]\nzstd_level = 23");
    assert!(
        e.starts_with(
            "the config t.toml is invalid: backup.zstd_level = 23 is out of range; zstd accepts -"
        ),
        "{e}"
    );
    assert!(e.contains(" to 22 (1 to 19 are the usual levels"), "{e}");
    assert!(parse_err("[backup]\nzstd_level = -200000")
        .contains("backup.zstd_level = -200000 is out of range"));
    for ok in [-5, 0, 1, 19, 22] {
        let c = parse(&format!("[backup]\nzstd_level = {ok}")).unwrap();
        assert_eq!(c.backup.zstd_level, ok);
    }
}

#[test]
fn threads_are_checked() {
    assert_eq!(
        parse_err("[backup]\nthreads = 257"),
        "the config t.toml is invalid: backup.threads = 257 is out of range; it must be 0 (one zstd worker per core) to 256"
    );
    for ok in [0, 1, 256] {
        let c = parse(&format!("[backup]\nthreads = {ok}")).unwrap();
        assert_eq!(c.backup.threads, ok);
    }
    let e = parse_err("[backup]\nthreads = -1");
    assert!(e.contains("threads"), "{e}");
}

#[test]
fn appliance_id_length_is_checked() {
    assert_eq!(
        parse_err("appliance_id = \"\""),
        "the config t.toml is invalid: appliance_id = \"\" is out of range; it is 0 bytes long and must be 1 to 63 (or leave it out to use /etc/machine-id)"
    );
    let long = "a".repeat(64);
    assert!(parse_err(&format!("appliance_id = \"{long}\""))
        .contains("it is 64 bytes long and must be 1 to 63"));
    let ok = "a".repeat(63);
    let c = parse(&format!("appliance_id = \"{ok}\"")).unwrap();
    assert_eq!(c.appliance_id, Some(ok));
    // Bytes, not characters: 32 two-byte characters are 64 bytes.
    let wide = "é".repeat(32);
    assert!(parse_err(&format!("appliance_id = \"{wide}\"")).contains("64 bytes long"));
}

#[test]
fn typo_in_a_target_table_names_the_key_and_the_table() {
    let e = parse_err("[targets.nas]\nurl = \"smb://u@h/s/p\"\npasword = \"x\"");
    assert!(
        e.contains("unknown field `pasword`, expected one of `url`, `password_file`, `password_env`, `timeout_secs`, `endpoint`, `region`, `path_style`, `allow_http`, `ca_file`, `access_key_id`, `secret_key_file`, `secret_key_env`, `lock_mode`, `retention_days`, `retention_secs`, `quota_bytes`\n(in table [targets.nas])"),
        "{e}"
    );
    assert!(e.contains("3 | pasword = "), "{e}");
    assert!(!e.contains("expected struct TargetConfig"), "{e}");
    // A misspelt key of [targets] itself reads as a target that is not a table.
    let e = parse_err("[targets]\nssh_identiy = \"/x\"");
    assert!(
        e.contains("invalid type: string \"/x\", expected a [targets.NAME] table (the keys of [targets] itself are ssh_identity, known_hosts, default)\n(in table [targets])"),
        "{e}"
    );
    // A missing url is named, with its table.
    let e = parse_err("[backup]\n[targets.nas]\npassword_env = \"X\"");
    assert!(
        e.contains("missing field `url`\n(in table [targets.nas])"),
        "{e}"
    );
    // The well-formed form still parses.
    let c = parse(
        "[targets]\ndefault = \"nas\"\nknown_hosts = \"/k\"\n[targets.nas]\nurl = \"smb://u@h/s/p\"\npassword_file = \"/p\"\n[targets.dr]\nurl = \"ssh://u@h/p\"\ntimeout_secs = 5",
    )
    .unwrap();
    assert_eq!(c.targets.default.as_deref(), Some("nas"));
    assert_eq!(c.targets.known_hosts.as_deref(), Some(Path::new("/k")));
    assert_eq!(c.targets.named.len(), 2);
    assert_eq!(c.targets.named["dr"].timeout_secs, Some(5));
}

#[test]
fn parse_errors_name_their_table() {
    let e = parse_err("[backup]\nsources = [\n  \"/etc\",\n]\nexclud = []");
    assert!(e.contains("unknown field `exclud`"), "{e}");
    assert!(e.contains("(in table [backup])"), "{e}");
    assert_eq!(table_at("a = 1\n[x.y] # c\nb = 2\n", 20), Some("x.y"));
    assert_eq!(table_at("[[arr]]\nb = 2\n", 9), Some("arr"));
    assert_eq!(table_at("[t]\n", 0), Some("t"));
    assert_eq!(table_at("a = 1\n", 2), None);
}

#[test]
fn backend_table_is_required() {
    let e = Config::parse("[keys]\nbackend = \"pkcs11\"\n", Path::new("t.toml")).unwrap_err();
    assert_eq!(e.to_string(), "the config t.toml sets keys.backend = \"pkcs11\" but has no [keys.pkcs11] table; add it (see docs/operator-guide.md)");
}
