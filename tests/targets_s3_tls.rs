//! The S3 target over https against a real SeaweedFS (tests/testbed/s3.sh serves S3 over
//! TLS too, with a certificate from a throwaway CA): the certificate is verified against
//! `ca_file`; another CA, or the system's roots, is a clear, permanent TLS error; and the
//! secret key can come from the environment instead of a file.

mod common;
#[path = "common/s3.rs"]
mod s3;
#[path = "common/targets.rs"]
mod tb;

use common::stderr;
use s3::{check_fails, setup};
use tb::{backup_to, list, source};

#[test]
fn https_endpoint_verifies_the_certificate_against_ca_file() {
    let (sim, tb) = setup();
    let base = tb
        .toml()
        .split("[targets.testbed-s3]")
        .nth(1)
        .unwrap()
        .replace(tb.get("S3_URL"), tb.get("S3_HTTPS_URL"))
        .replace("allow_http = true\n", "");
    let table = |name: &str, extra: &str| format!("\n[targets.{name}]{base}{extra}\n");
    let mut extra = table(
        "tls",
        &format!(
            "ca_file = \"{}\"\nlock_mode = \"GOVERNANCE\"\nretention_days = 1",
            tb.get("S3_CA_FILE")
        ),
    );
    extra += &table(
        "tls-wrong-ca",
        &format!("ca_file = \"{}\"", tb.get("S3_WRONG_CA_FILE")),
    );
    extra += &table("tls-system-roots", "");
    // The secret from the environment instead of a file.
    extra += &table(
        "tls-env",
        &format!("ca_file = \"{}\"", tb.get("S3_CA_FILE")),
    )
    .replace(
        &format!("secret_key_file = \"{}\"", tb.get("S3_SECRET_FILE")),
        "secret_key_env = \"OFFBOX_TEST_S3_SECRET\"",
    );
    sim.edit_config(|c| format!("{c}\n{extra}"));

    // The right CA: check, back up, list and verify over https.
    let check = sim.ok(&["target", "check", "tls"]);
    assert!(
        String::from_utf8_lossy(&check).contains("bucket Object Lock: enabled"),
        "{}",
        String::from_utf8_lossy(&check)
    );
    let src = source(&sim, 1);
    let out = backup_to(&sim, &src, "tls");
    assert!(out.status.success(), "{}", stderr(&out));
    let names = list(&sim, "tls");
    assert_eq!(names.len(), 1, "{names:?}");
    let v = sim.ok(&["verify", "--from", "tls", &names[0]]);
    assert!(String::from_utf8_lossy(&v).contains("verify OK"));

    let secret = std::fs::read_to_string(tb.get("S3_SECRET_FILE")).unwrap();
    let out = sim
        .cmd(&["target", "check", "tls-env"])
        .env("OFFBOX_TEST_S3_SECRET", secret.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, e, err) = check_fails(&sim, "tls-env");
    assert_eq!(
        (code, e["kind"].as_str()),
        (69, Some("target.credentials")),
        "{err}"
    );
    assert!(
        err.contains("$OFFBOX_TEST_S3_SECRET, which is not set"),
        "{err}"
    );

    // Another CA, and the system's roots: a clear TLS error, permanent, nothing sent.
    for name in ["tls-wrong-ca", "tls-system-roots"] {
        let (code, e, err) = check_fails(&sim, name);
        assert_eq!(code, 69, "{name}: {err}");
        assert_eq!(e["retry"], "permanent", "{name}: {err}");
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(msg.contains("TLS"), "{name}: {err}");
        assert!(msg.contains("certificate"), "{name}: {err}");
        assert!(msg.contains("ca_file"), "{name}: {err}");
    }
}
