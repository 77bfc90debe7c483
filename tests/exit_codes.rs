//! Every class of target failure reaches the exit code and `--json` with its kind and retry
//! class, against the real servers of the test bed: unreachable (75, temporary), full (69),
//! credentials refused (69), self-target (69); and a configuration error (1).

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::stderr;

/// The `error` object of a failing `--json` run (the last line of standard error).
fn error_json(o: &Output) -> serde_json::Value {
    let err = stderr(o);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"error\""))
        .unwrap_or_else(|| panic!("no JSON error line in: {err}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["error"].clone()
}

fn assert_class(o: &Output, code: i32, kind: &str, retry: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(err.contains("offbox: error: "), "{err}");
    let e = error_json(o);
    assert_eq!(e["kind"], kind, "{err}");
    assert_eq!(e["retry"], retry, "{err}");
    assert_eq!(e["exit_code"], code, "{err}");
    assert!(!e["hint"].as_str().unwrap().is_empty(), "{err}");
    assert!(
        err.contains(e["message"].as_str().unwrap()),
        "the JSON message is the error line's: {err}"
    );
}

#[test]
fn each_target_failure_class_has_its_exit_code_and_json() {
    let (sim, bed) = tb::setup();
    let src = tb::source(&sim, 6);
    let s = src.to_str().unwrap();
    let backup = |to: &str| {
        sim.run(&[
            "--json", "backup", "create", "--kind", "system", "--source", s, "--to", to,
        ])
    };

    // Unreachable: a port where nothing listens, on the test bed's host.
    let remote = bed.get("TESTBED_REMOTE");
    let url = format!("ssh://offbox-tb@{remote}:2/srv/none");
    assert_class(&backup(&url), 75, "target.unreachable", "temporary");

    // Full: 6 MiB of incompressible data into the 2 MiB share.
    assert_class(&backup("testbed-ssh-small"), 69, "target.full", "permanent");

    // Credentials refused: the SMB share with a wrong password.
    let pw = sim.dir.path().join("wrong-password");
    fs::write(&pw, "not the password\n").unwrap();
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    sim.edit_config(|t| {
        format!(
            "{t}\n[targets.smb-wrong]\nurl = \"{}\"\npassword_file = \"{}\"\n",
            bed.get("SMB_URL"),
            pw.display()
        )
    });
    assert_class(&backup("smb-wrong"), 69, "target.credentials", "permanent");

    // Self-target: the appliance itself, spelled as loopback.
    assert_class(
        &backup("ssh://offbox-tb@127.0.0.1/srv/data"),
        69,
        "target.self_target",
        "permanent",
    );

    // Not a target failure: a configuration error is 1, kind config.
    sim.edit_config(|t| t.replace("[backup]\n", "[backup]\nsegment_size = 1\n"));
    assert_class(&backup("testbed-ssh"), 1, "config", "permanent");
}

#[test]
fn a_command_line_that_does_not_parse_is_exit_2_with_json_and_documented() {
    let run = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .args(args)
            .env_clear()
            .output()
            .unwrap()
    };
    let o = run(&["--json", "verify", "--bogus", "a.obx"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: unexpected argument '--bogus' found"),
        "{err}"
    );
    let e = error_json(&o);
    assert_eq!(
        e,
        serde_json::json!({
            "kind": "usage",
            "retry": "permanent",
            "hint": "fix the command line; `offbox help COMMAND` shows its options",
            "message": "unexpected argument '--bogus' found",
            "exit_code": 2,
        })
    );
    // Without --json: clap's text only.
    let o = run(&["verify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("{\"error\""), "{}", stderr(&o));
    let o = run(&["verify", "--keyless", "a.obx"]);
    assert_eq!(o.status.code(), Some(2), "--keyless needs --public-key");
    // --help documents every exit code, 2 included, and exits 0 with no JSON.
    let o = run(&["--json", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for code in ["0", "1", "2", "3", "4", "69", "75"] {
        assert!(
            help.lines().any(|l| l.starts_with(&format!("  {code} "))),
            "exit code {code} in --help:\n{help}"
        );
    }
    assert!(
        help.contains("  2   usage: the command line does not parse"),
        "{help}"
    );
}
