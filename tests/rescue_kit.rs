//! The rescue kit: a build without default features (no TPM, no transports) depends on
//! nothing but libc, and opens an archive with custodian shares alone, on a machine with no
//! HSM, TPM, config or environment. `tests/run.sh` builds it and sets OFFBOX_RESCUE_BIN.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn rescue_bin() -> Option<PathBuf> {
    let p = std::env::var_os("OFFBOX_RESCUE_BIN").map(PathBuf::from);
    if p.is_none() {
        eprintln!("OFFBOX_RESCUE_BIN is not set: run tests/run.sh, which builds the rescue kit");
    }
    p
}

#[test]
fn rescue_build_needs_only_libc_and_recovers_with_shares() {
    let Some(bin) = rescue_bin() else { return };
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    let libs = String::from_utf8_lossy(&ldd.stdout);
    for line in libs.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            ["linux-vdso.so.1", "libgcc_s.so.1", "libc.so.6", "libm.so.6"].contains(&name)
                || name.contains("ld-linux"),
            "the rescue kit links {name}: {libs}"
        );
    }

    let sim = common::Sim::new();
    let work = tempfile::tempdir().unwrap();
    let export = work.path().join("export.json");
    std::fs::write(&export, common::pattern(70_000, 3)).unwrap();
    let archive = work.path().join("s.obx");
    sim.backup("secrets", &export, &archive);
    std::fs::remove_dir_all(sim.path().join("tokens")).unwrap();

    let out_file = work.path().join("recovered");
    let out = Command::new(&bin)
        .arg("recover")
        .arg(&archive)
        .args(["--share", sim.share(2).to_str().unwrap()])
        .args(["--share", sim.share(3).to_str().unwrap()])
        .args(["--share", sim.share(5).to_str().unwrap()])
        .arg("--output")
        .arg(&out_file)
        .env_clear()
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("opened with recovery shares 2,3,5"));
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        std::fs::read(&export).unwrap()
    );

    // The TPM backend is left out of the kit, and says so.
    let cfg = work.path().join("tpm.toml");
    std::fs::write(
        &cfg,
        "[keys]\nbackend = \"tpm\"\n[keys.tpm]\ntcti = \"device:/dev/tpmrm0\"\n",
    )
    .unwrap();
    let out = Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .args(["keys", "status"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        common::stderr(&out).contains("this offbox build has no tpm support (a rescue-kit build)"),
        "{}",
        common::stderr(&out)
    );
}
