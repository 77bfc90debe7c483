//! The S3 target against a real SeaweedFS (`weed mini`, tests/testbed/s3.sh) with Object
//! Lock: round trip, keyless verify with read-only credentials, immutability and prune of
//! locked archives, a run killed mid-upload, two appliances in one bucket, and the clear
//! errors (wrong secret, unknown bucket, bucket without lock, self-target endpoint). Over
//! https, with `ca_file`: tests/targets_s3_tls.rs.
//!
//! The server side is inspected with boto3 (from the test bed's venv) and the admin key.

mod common;
#[path = "common/s3.rs"]
mod s3;
#[path = "common/targets.rs"]
mod tb;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{pattern, stderr, Sim};
use s3::{check_fails, py, py_try, s3_config, setup, HOME, T};
use tb::{backup_to, list, source, wait_for, Testbed};

#[test]
fn round_trip_list_restore_verify_and_readonly_keyless_verify() {
    let (sim, tb) = setup();
    s3_config(&sim, "lock_mode = \"GOVERNANCE\"\nretention_days = 1");
    let out = sim.run(&["target", "check", T]);
    assert!(out.status.success(), "{}", stderr(&out));
    // No free space to report: the capacity check says so and makes no figure up.
    assert!(
        stderr(&out).contains("does not report its free space (unknown)"),
        "{}",
        stderr(&out)
    );
    let check = String::from_utf8_lossy(&out.stdout);
    assert!(
        check.contains("testbed-s3 OK: url=s3://offbox-locked/fleet"),
        "{check}"
    );
    assert!(check.contains("bucket Object Lock: enabled"), "{check}");
    assert!(
        check.contains("archive retention: GOVERNANCE 1 days"),
        "{check}"
    );
    assert!(check.contains("free space: not reported"), "{check}");
    let src = source(&sim, 20); // 20 MiB of incompressible data: two parts of 16 MiB
    let out = backup_to(&sim, &src, T);
    assert!(out.status.success(), "{}", stderr(&out));
    let names = list(&sim, T);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("offbox-hsm-sim-system-"), "{names:?}");
    // Layout: under the prefix and the appliance's folder; no temporary object, no upload
    // left, and the archive carries its retention.
    let seen = py(
        &tb,
        "ADMIN",
        &format!(
            r#"
k = "{HOME}{name}"
print(json.dumps({{"keys": keys("fleet/"), "uploads": uploads("fleet/"),
  "versions": len(versions("fleet/")), "mode": s3.head_object(Bucket=B, Key=k).get("ObjectLockMode")}}))
"#,
            name = names[0]
        ),
    );
    let v: serde_json::Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(
        v["keys"],
        serde_json::json!([format!("{HOME}{}", names[0])]),
        "{v}"
    );
    assert_eq!(v["uploads"], serde_json::json!([]), "{v}");
    assert_eq!(v["versions"], 1, "{v}");
    assert_eq!(v["mode"], "GOVERNANCE", "{v}");
    // Restore byte-exact and verify, both read from the bucket.
    let dest = sim.dir.path().join("restored");
    sim.ok(&[
        "restore",
        "--from",
        T,
        &names[0],
        "--to",
        dest.to_str().unwrap(),
    ]);
    let back = dest.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(back.join("data.bin")).unwrap(),
        std::fs::read(src.join("data.bin")).unwrap()
    );
    let v = sim.ok(&["verify", "--from", T, &names[0]]);
    assert!(String::from_utf8_lossy(&v).contains("verify OK"));
    // An auditor: the read-only key, a config with [targets] only, no HSM, no key.
    let pem = sim.dir.path().join("signing.pem");
    sim.ok(&["keys", "export-public", "--output", pem.to_str().unwrap()]);
    let ro = tb
        .toml()
        .replace(tb.get("S3_ACCESS_KEY"), tb.get("S3_RO_ACCESS_KEY"))
        .replace(tb.get("S3_SECRET_FILE"), tb.get("S3_RO_SECRET_FILE"));
    let server_cfg = sim.dir.path().join("auditor.toml");
    std::fs::write(&server_cfg, ro).unwrap();
    let auditor = |args: &[&str]| {
        Command::new(common::bin())
            .arg("--config")
            .arg(&server_cfg)
            .args(args)
            .env_clear()
            .output()
            .unwrap()
    };
    let out = auditor(&[
        "verify",
        "--keyless",
        "--public-key",
        pem.to_str().unwrap(),
        "--from",
        T,
        &names[0],
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("offbox: keyless verify OK: kind=system ")
    );
    // The read-only key can list and read but not write or delete.
    let ro = py(
        &tb,
        "RO",
        &format!(
            r#"
k = "{HOME}{name}"
print(len(keys("fleet/")), len(s3.get_object(Bucket=B, Key=k)["Body"].read()) > 0)
for f in (lambda: s3.put_object(Bucket=B, Key="{HOME}x", Body=b"x"), lambda: s3.delete_object(Bucket=B, Key=k)):
    try:
        f(); print("allowed")
    except s3.exceptions.ClientError as e:
        print(e.response["Error"]["Code"])
"#,
            name = names[0]
        ),
    );
    assert_eq!(ro, "1 True\nAccessDenied\nAccessDenied\n");
    // With quota_bytes, free space is the quota less what lies under the prefix.
    let quota = tb
        .toml()
        .split("[targets.testbed-s3]")
        .nth(1)
        .unwrap()
        .to_string();
    sim.edit_config(|c| format!("{c}\n[targets.quota]{quota}quota_bytes = 1000000000\n"));
    let out = sim.ok(&["--json", "target", "check", "quota"]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let free = v["free_bytes"].as_u64().unwrap_or_else(|| panic!("{v}"));
    assert!(
        (1_000_000_000 - 22 * (1 << 20)..1_000_000_000 - 20 * (1 << 20)).contains(&free),
        "{v}"
    );
}

#[test]
fn locked_archives_resist_delete_and_overwrite_and_prune_waits_for_the_retention() {
    let (sim, tb) = setup();
    s3_config(&sim, "lock_mode = \"COMPLIANCE\"\nretention_secs = 20");
    let src = source(&sim, 1);
    let t0 = std::time::Instant::now();
    assert!(backup_to(&sim, &src, T).status.success());
    // The retention began at the upload, before this: it ends by done + 20 s.
    let done = std::time::Instant::now();
    let first = list(&sim, T).remove(0);
    // With the appliance's own key: the locked version cannot be deleted, and the name
    // cannot be written over.
    let tried = py(
        &tb,
        "",
        &format!(
            r#"
k = "{HOME}{first}"
vid = versions(k)[0][1]
r = s3.get_object_retention(Bucket=B, Key=k, VersionId=vid)["Retention"]
print(r["Mode"])
for f in (lambda: s3.delete_object(Bucket=B, Key=k, VersionId=vid),
          lambda: s3.put_object(Bucket=B, Key=k, Body=b"evil", IfNoneMatch="*")):
    try:
        f(); print("allowed")
    except s3.exceptions.ClientError as e:
        print(e.response["Error"]["Code"])
print(len(versions(k)))
"#
        ),
    );
    assert_eq!(tried, "COMPLIANCE\nAccessDenied\nPreconditionFailed\n1\n");
    // A second archive; prune keeps the newest and reports the older one as locked.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(backup_to(&sim, &src, T).status.success());
    let out = sim.run(&["prune", "--to", T, "--keep-last", "1"]);
    let (text, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "too slow to test the lock"
    );
    assert!(
        text.contains(&format!("locked\t{first}\tuntil 20")),
        "{text}"
    );
    assert!(err.contains("1 locked (Object Lock) and kept"), "{err}");
    assert_eq!(list(&sim, T).len(), 2);
    // Once the retention has passed, prune deletes it: every version.
    std::thread::sleep(Duration::from_secs(21).saturating_sub(done.elapsed()));
    let out = sim.ok(&["prune", "--to", T, "--keep-last", "1"]);
    assert!(String::from_utf8_lossy(&out).contains(&format!("deleted\t{first}")));
    let left = list(&sim, T);
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], first);
    let v = py(
        &tb,
        "ADMIN",
        &format!("print(len(versions(\"{HOME}{first}\")))"),
    );
    assert_eq!(v, "0\n");
}

/// A secrets backup reading a FIFO that gets 20 MiB (one part goes out) and then stays
/// open: the run stalls mid-upload. Returns the child, the sender that lets the feeder
/// close the FIFO, and the feeder.
fn stalled_upload(
    sim: &Sim,
    tb: &Testbed,
) -> (
    std::process::Child,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let fifo = sim.dir.path().join("export.fifo");
    tb::mkfifo(&fifo);
    let child = sim
        .cmd(&[
            "backup",
            "create",
            "--kind",
            "secrets",
            "--source",
            fifo.to_str().unwrap(),
            "--to",
            T,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        for i in 0..20 {
            if f.write_all(&pattern(1 << 20, 40 + i)).is_err() {
                return;
            }
        }
        let _ = rx.recv();
    });
    assert!(
        wait_for(60, || py(tb, "ADMIN", UPLOADS_AND_KEYS) == "1 0\n"),
        "no upload in progress: {}",
        py(tb, "ADMIN", UPLOADS_AND_KEYS)
    );
    // Let the first part go out.
    std::thread::sleep(Duration::from_secs(2));
    (child, tx, feeder)
}

/// Uploads in progress and objects under the prefix.
const UPLOADS_AND_KEYS: &str = "print(len(uploads(\"fleet/\")), len(keys(\"fleet/\")))";

/// The next backup succeeds, aborts the stale upload and publishes one archive.
fn next_run_succeeds_and_cleans(sim: &Sim, tb: &Testbed) {
    let src = source(sim, 1);
    let out = backup_to(sim, &src, T);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("removed the leftover .offbox-tmp."), "{err}");
    assert_eq!(py(tb, "ADMIN", UPLOADS_AND_KEYS), "0 1\n");
}

/// After a killed run: no object, its multipart upload left; then the next run succeeds and
/// aborts that upload.
fn upload_left_then_next_run_cleans(sim: &Sim, tb: &Testbed) {
    assert_eq!(
        py(tb, "ADMIN", UPLOADS_AND_KEYS),
        "1 0\n",
        "no object, the upload left"
    );
    next_run_succeeds_and_cleans(sim, tb);
}

#[test]
fn killed_offbox_leaves_no_object_and_next_run_aborts_its_upload() {
    let (sim, tb) = setup();
    let (mut child, tx, feeder) = stalled_upload(&sim, &tb);
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let _ = tx.send(());
    let _ = feeder.join();
    upload_left_then_next_run_cleans(&sim, &tb);
}

#[test]
fn killed_server_fails_cleanly_and_next_run_aborts_the_upload() {
    let (sim, tb) = setup();
    let (child, tx, feeder) = stalled_upload(&sim, &tb);
    let st = Command::new("kill")
        .args(["-9", tb.get("S3_PID")])
        .status()
        .unwrap();
    assert!(st.success());
    let _ = tx.send(());
    let _ = feeder.join();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "a temporary failure: {err}");
    assert!(err.contains("s3://offbox-locked/fleet"), "{err}");
    let st = Command::new(common::repo().join("tests/testbed/s3.sh"))
        .arg("restart")
        .arg(tb.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(wait_for(60, || py_try(&tb, "ADMIN", UPLOADS_AND_KEYS).is_ok()));
    upload_left_then_next_run_cleans(&sim, &tb);
}

#[test]
fn two_appliances_share_a_bucket_and_prune_only_their_own() {
    let (a, tb) = setup();
    let b = Sim::new();
    b.edit_config(|c| c.replace("appliance_id = \"hsm-sim\"", "appliance_id = \"pam-b\""));
    tb.attach(&b, |t| t);
    let src = source(&a, 1);
    for _ in 0..2 {
        assert!(backup_to(&a, &src, T).status.success());
        assert!(backup_to(&b, &src, T).status.success());
        std::thread::sleep(Duration::from_millis(1100));
    }
    let keys = py(
        &tb,
        "ADMIN",
        "print(sorted(k.split('/')[1] for k in keys('fleet/')))",
    );
    assert_eq!(keys, "['hsm-sim', 'hsm-sim', 'pam-b', 'pam-b']\n");
    let out = a.ok(&["prune", "--to", T, "--keep-last", "1"]);
    assert_eq!(
        String::from_utf8_lossy(&out).matches("deleted\t").count(),
        1
    );
    // Each lists only its own archives; --appliance and --all show the others' (an
    // auditor's view).
    let theirs = list(&b, T);
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert!(theirs.iter().all(|n| n.contains("-pam-b-")), "{theirs:?}");
    let mine = list(&a, T);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert!(mine[0].contains("-hsm-sim-"), "{mine:?}");
    let names = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = String::from_utf8(a.ok(args))
            .unwrap()
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let mut all = [theirs.clone(), mine.clone()].concat();
    all.sort();
    assert_eq!(names(&["backup", "list", "--to", T, "--all"]), all);
    assert_eq!(
        names(&["backup", "list", "--to", T, "--appliance", "pam-b"]),
        theirs
    );
    let out = a.run(&["backup", "list", "--to", T, "--appliance", "pam-b"]);
    assert!(
        stderr(&out)
            .contains("offbox: 2 archive(s) of appliance pam-b on s3://offbox-locked/fleet"),
        "{}",
        stderr(&out)
    );
    // A's keys cannot open B's archive.
    let dest = a.dir.path().join("other");
    let out = a.run(&[
        "restore",
        "--from",
        T,
        &theirs[0],
        "--to",
        dest.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", stderr(&out));
}

#[test]
fn each_misconfiguration_is_a_clear_error_of_its_kind() {
    let (sim, tb) = setup();
    let wrong = sim.dir.path().join("wrong.secret");
    std::fs::write(&wrong, "0123456789abcdef0123456789abcdef\n").unwrap();
    let table = |name: &str, url: &str, endpoint: &str, extra: &str| {
        format!(
            "\n[targets.{name}]\nurl = \"{url}\"\nendpoint = \"{endpoint}\"\npath_style = true\naccess_key_id = \"{id}\"\nsecret_key_file = \"{secret}\"\ntimeout_secs = 5\n{extra}\n",
            id = tb.get("S3_ACCESS_KEY"),
            secret = tb.get("S3_SECRET_FILE"),
        )
    };
    let ep = tb.get("S3_URL");
    let port = ep.rsplit(':').next().unwrap();
    let mut extra = String::new();
    extra += &table(
        "wrong-secret",
        "s3://offbox-locked/x",
        ep,
        "allow_http = true",
    )
    .replace(tb.get("S3_SECRET_FILE"), wrong.to_str().unwrap());
    extra += &table(
        "no-bucket",
        "s3://offbox-missing/x",
        ep,
        "allow_http = true",
    );
    extra += &table(
        "no-lock",
        "s3://offbox-nolock/x",
        ep,
        "allow_http = true\nlock_mode = \"COMPLIANCE\"\nretention_days = 7",
    );
    extra += &table(
        "no-lock-plain",
        "s3://offbox-nolock/x",
        ep,
        "allow_http = true",
    );
    extra += &table(
        "self",
        "s3://offbox-locked/x",
        &format!("http://127.0.0.1:{port}"),
        "allow_http = true",
    );
    extra += &table("plain-http", "s3://offbox-locked/x", ep, "");
    sim.edit_config(|c| format!("{c}\n{extra}"));

    let (code, e, err) = check_fails(&sim, "wrong-secret");
    assert_eq!(
        (code, e["kind"].as_str()),
        (69, Some("target.credentials")),
        "{err}"
    );
    assert!(err.contains("authentication as OFFBOXRW failed"), "{err}");
    assert!(err.contains("secret_key_file"), "{err}");
    assert!(
        !err.contains("0123456789abcdef"),
        "the secret never shows: {err}"
    );

    let (code, e, err) = check_fails(&sim, "no-bucket");
    assert_eq!(
        (code, e["kind"].as_str()),
        (69, Some("target.no_directory")),
        "{err}"
    );
    assert!(
        err.contains("bucket offbox-missing does not exist"),
        "{err}"
    );

    let (code, e, err) = check_fails(&sim, "no-lock");
    assert_eq!(
        (code, e["kind"].as_str()),
        (1, Some("target.invalid")),
        "{err}"
    );
    assert!(err.contains("the bucket has no Object Lock"), "{err}");
    // The same bucket without lock configured works, and says it has none.
    let ok = sim.ok(&["target", "check", "no-lock-plain"]);
    assert!(String::from_utf8_lossy(&ok).contains("bucket Object Lock: NOT enabled"));

    let (code, e, err) = check_fails(&sim, "self");
    assert_eq!(
        (code, e["kind"].as_str()),
        (69, Some("target.self_target")),
        "{err}"
    );

    let (code, e, err) = check_fails(&sim, "plain-http");
    assert_eq!(
        (code, e["kind"].as_str()),
        (1, Some("target.invalid")),
        "{err}"
    );
    assert!(err.contains("use https"), "{err}");
}

/// Incremental video archives on S3: the manifest is read back with a ranged GET from the
/// archive's end when the catalogue is lost, and the newest point restores.
#[test]
fn video_chain_rebuilds_its_catalogue_with_ranged_reads() {
    let (sim, _tb) = setup();
    let rec = sim.dir.path().join("recordings");
    std::fs::create_dir_all(rec.join("2026")).unwrap();
    std::fs::write(rec.join("2026/a.mp4"), pattern(3 << 20, 1)).unwrap();
    std::fs::write(rec.join("2026/b.mp4"), pattern(1000, 2)).unwrap();
    sim.edit_config(|c| {
        format!(
            "{}\n\n[videos]\nenabled = true\nsources = [\"{}\"]\nsettle_secs = 0\n",
            c.trim_end(),
            rec.display()
        )
    });
    let args = ["--json", "backup", "create", "--kind", "videos", "--to", T];
    let out = sim.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_file(sim.path().join(format!("state/videos/{T}.catalogue"))).unwrap();
    let out = sim.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["summary"]["stored"], 0, "{s}");
    assert_eq!(s["summary"]["chain_seq"], 1, "{s}");
    assert!(
        s["summary"]["catalogue"]
            .as_str()
            .unwrap()
            .starts_with("rebuilt from "),
        "{s}"
    );
    let to = sim.dir.path().join("restored");
    let out = sim.run(&[
        "restore",
        "--kind",
        "videos",
        "--from",
        T,
        "--to",
        to.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = to.join(rec.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(got.join("2026/a.mp4")).unwrap(),
        pattern(3 << 20, 1)
    );
    assert_eq!(
        std::fs::read(got.join("2026/b.mp4")).unwrap(),
        pattern(1000, 2)
    );
}
