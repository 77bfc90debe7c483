//! Fuzz target `config`: the configuration file (`config::Config::parse`) and what is read out
//! of an accepted config without I/O: the recovery public key, the exclude patterns (matched
//! against the configured sources) and the resolution of every named target.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use offbox::config::Config;
use offbox::keys::recovery::RecoveryPublicKey;
use offbox::payload::exclude::Excludes;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let _ = format!("{cfg:?}");
    if let Some(pk) = &cfg.recovery.public_key {
        let _ = RecoveryPublicKey::parse(pk);
    }
    let excludes = Excludes::new(&cfg.backup.exclude);
    for source in cfg.backup.sources.iter().take(16) {
        let _ = excludes.matches(source);
    }
    let _ = cfg.targets.resolve(None);
    for name in cfg.targets.named.keys().take(16) {
        let _ = cfg.targets.resolve(Some(name));
    }
});
