//! The backup service against the test bed (tests/testbed/up) and a real SoftHSM2 token:
//! `offbox run` (both kinds, retention, state, the run lock), `offbox watch` (one lost and
//! one recovered event per outage, delivered by the real SMTP and syslog servers of the
//! bed), a full target, a missing HSM token, and `offbox status --json` after each.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{stderr, Sim};
use serde_json::Value;
use tb::{finals, keep_targets, temps, wait_for, Testbed};

/// A simulator with the bed's ssh targets, `src` as the system source and the measured
/// path, a secrets file, `schedule` and optionally the bed's `[notify]` section.
fn setup(schedule: &str, notify: bool) -> (Sim, Testbed, PathBuf) {
    let tb = Testbed::up();
    let sim = Sim::new();
    tb.attach(&sim, |t| keep_targets(t, "targets.testbed-ssh"));
    let src = tb::source(&sim, 1);
    let secrets = sim.dir.path().join("export.json");
    std::fs::write(&secrets, br#"{"vault":"export"}"#).unwrap();
    let notify = if notify {
        std::fs::read_to_string(tb.get("NOTIFY_TOML")).unwrap()
    } else {
        String::new()
    };
    sim.edit_config(|c| {
        format!(
            "{}\n[secrets]\nfile = {:?}\n[capacity]\nmeasured_path = {:?}\n{schedule}\n{notify}",
            c.replace("sources = []", &format!("sources = [{src:?}]")),
            secrets,
            src
        )
    });
    (sim, tb, src)
}

fn json_of(out: &Output, key: &str) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON on stdout: {text}\nstderr: {}", stderr(out)));
    let v: Value = serde_json::from_str(line).unwrap();
    v[key].clone()
}

fn status(sim: &Sim) -> Value {
    json_of(&sim.run(&["--json", "status"]), "status")
}

fn state_file(sim: &Sim) -> PathBuf {
    sim.path().join("state/service-state.json")
}

/// Whether the journal channel writes to stderr (there is no /dev/log here), so that the
/// tests can count its lines.
fn journal_on_stderr() -> bool {
    !Path::new("/dev/log").exists()
}

/// Asserts that the journal lines on `err` hold `n` events `event` about `target`.
fn assert_journal(err: &str, event: &str, target: &str, n: usize) {
    if !journal_on_stderr() {
        return;
    }
    let got = err
        .lines()
        .filter(|l| l.contains(&format!("EVENT {event}:")))
        .filter(|l| {
            l.contains(&format!("target={target} ")) || l.contains(&format!("target={target})"))
        })
        .count();
    assert_eq!(got, n, "{event} about {target}: {err}");
}

const BOTH: &str = "[schedule.secrets]\ntargets = [\"testbed-ssh\"]\nkeep_last = 2\nverify_after = true\n[schedule.system]\ntargets = [\"testbed-ssh\"]\nkeep_last = 2\n";

#[test]
fn run_publishes_both_kinds_prunes_records_and_respects_the_lock() {
    let (sim, tb, _) = setup(BOTH, false);
    let out = sim.run(&["--json", "run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = json_of(&out, "run");
    let results = run["results"].as_array().unwrap();
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["secrets", "system"], "secrets first: {run}");
    for r in results {
        assert_eq!(r["outcome"], "succeeded", "{r}");
        assert!(
            r["archive"]
                .as_str()
                .unwrap()
                .starts_with("offbox-hsm-sim-"),
            "{r}"
        );
        assert!(
            r["bytes"].as_u64().unwrap() > 0 && r["error_kind"].is_null(),
            "{r}"
        );
    }
    assert_eq!(results[0]["verified"], true, "verify_after on secrets");
    assert_eq!(run["exit_code"], 0);
    let first: Vec<String> = results
        .iter()
        .map(|r| r["archive"].as_str().unwrap().into())
        .collect();
    assert_eq!(finals(&tb.files("SSH_DATA_DIR")).len(), 2);

    // Not due again within the day: nothing new.
    let out = sim.run(&["--json", "run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = json_of(&out, "run");
    assert!(
        again["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "not_due"),
        "{again}"
    );
    assert_eq!(finals(&tb.files("SSH_DATA_DIR")).len(), 2);

    // Two forced runs more: keep_last = 2 prunes the oldest of each kind.
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let out = sim.run(&["--json", "run", "--now"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let files = tb.files("SSH_DATA_DIR");
    assert_eq!(finals(&files).len(), 4, "two per kind: {files:?}");
    assert!(temps(&files).is_empty(), "{files:?}");
    for f in &first {
        assert!(!files.contains(f), "the oldest {f} was pruned: {files:?}");
    }

    // State and status.
    let st = status(&sim);
    for k in st["kinds"].as_array().unwrap() {
        assert!(
            k["last_success"]["archive"]
                .as_str()
                .unwrap()
                .ends_with(".obx"),
            "{k}"
        );
        assert_eq!(k["failing"], false, "{k}");
        assert!(
            k["next_due"].as_i64().unwrap() > st["now"].as_i64().unwrap(),
            "{k}"
        );
    }
    let ssh = st["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "testbed-ssh")
        .unwrap();
    assert_eq!(ssh["state"], "reachable", "{st}");
    assert_eq!(ssh["capacity"]["ok"], true, "{st}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state_file(&sim)).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Another holder of the run lock: exit 75 and nothing changes.
    let before_state = std::fs::read(state_file(&sim)).unwrap();
    // flock(2) locks conflict between open file descriptions, also within one process.
    let lock = std::fs::File::open(sim.path().join("state/run.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let out = sim.run(&["--json", "run", "--now"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"kind\":\"busy\""),
        "{}",
        stderr(&out)
    );
    drop(held);
    assert_eq!(std::fs::read(state_file(&sim)).unwrap(), before_state);
    assert_eq!(tb.files("SSH_DATA_DIR"), files);
}

/// The messages in the bed's Maildir whose subject names `title`, about `testbed-ssh`.
fn mails(tb: &Testbed, title: &str) -> usize {
    let dir = Path::new(tb.get("SMTP_MAILDIR")).join("new");
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let m = std::fs::read_to_string(e.path()).unwrap_or_default();
            m.lines()
                .any(|l| l.starts_with("Subject:") && l.contains(title))
                && m.lines().any(|l| l.trim_end() == "target: testbed-ssh")
        })
        .count()
}

/// RFC 5424 messages rsyslogd got over TLS for `event` and the target `testbed-ssh`.
fn syslog_tls(tb: &Testbed, event: &str) -> Vec<String> {
    std::fs::read_to_string(tb.get("SYSLOG_TLS_LOG"))
        .unwrap()
        .lines()
        .filter(|l| {
            l.contains(&format!("event=\"{event}\"")) && l.contains("target=\"testbed-ssh\"")
        })
        .map(str::to_string)
        .collect()
}

/// A cut link to the test bed's host: a blackhole route on this machine, so packets to it
/// are dropped here (as on a dead link) and never take another route off the machine.
/// Dropping the value restores the link.
struct Cut(String);

impl Cut {
    fn new(tb: &Testbed) -> Cut {
        let host = format!("{}/32", tb.get("TESTBED_REMOTE"));
        let st = Command::new("ip")
            .args(["route", "add", "blackhole", &host])
            .status()
            .unwrap();
        assert!(st.success());
        Cut(host)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["route", "del", "blackhole", &self.0])
            .status();
    }
}

#[test]
fn watch_sends_one_lost_per_outage_and_one_recovered() {
    let (sim, tb, _) = setup(
        "[schedule.system]\ntargets = [\"testbed-ssh\"]\nkeep_last = 2\n",
        true,
    );
    let out = sim.run(&["--json", "watch"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let w = json_of(&out, "watch");
    assert!(
        w["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["reachable"] == true),
        "{w}"
    );

    let cut = Cut::new(&tb);
    for i in 0..3 {
        let out = sim.run(&["--json", "watch"]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(75),
            "unreachable is temporary: {err}"
        );
        assert!(
            err.contains("\"kind\":\"target.unreachable\"")
                || err.contains("\"kind\":\"target.timeout\""),
            "{err}"
        );
        assert_journal(&err, "target_lost", "testbed-ssh", usize::from(i == 0));
    }
    let st = status(&sim);
    let ssh = st["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "testbed-ssh")
        .unwrap()
        .clone();
    assert_eq!(ssh["state"], "lost", "{st}");
    let conds = st["notifications"]["conditions"].as_array().unwrap();
    assert!(
        conds.iter().any(|c| c["key"] == "target:testbed-ssh:lost"),
        "{st}"
    );
    // The SMTP and syslog servers are behind the same link: the messages wait in the queue.
    assert!(
        !st["notifications"]["queued"].as_array().unwrap().is_empty(),
        "{st}"
    );

    drop(cut);
    let out = sim.run(&["--json", "watch"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_journal(&err, "target_recovered", "testbed-ssh", 1);
    assert!(
        wait_for(20, || mails(&tb, "target lost") == 1
            && mails(&tb, "target recovered") == 1),
        "lost {} recovered {}",
        mails(&tb, "target lost"),
        mails(&tb, "target recovered")
    );
    assert!(
        wait_for(20, || syslog_tls(&tb, "target_lost").len() == 1
            && syslog_tls(&tb, "target_recovered").len() == 1),
        "{}\nthe watch said: {err}",
        std::fs::read_to_string(tb.get("SYSLOG_TLS_LOG")).unwrap()
    );
    let lost = &syslog_tls(&tb, "target_lost")[0];
    assert!(
        lost.contains("offbox@32473") && lost.contains("error_kind=\"target."),
        "{lost}"
    );
    // Once more: nothing new.
    let out = sim.run(&["watch"]);
    assert!(out.status.success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        (mails(&tb, "target lost"), mails(&tb, "target recovered")),
        (1, 1)
    );
    let st = status(&sim);
    let ssh = st["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "testbed-ssh")
        .unwrap()
        .clone();
    assert_eq!(ssh["state"], "reachable", "{st}");
    assert!(
        st["notifications"]["queued"].as_array().unwrap().is_empty(),
        "{st}"
    );
}

#[test]
fn a_full_target_and_a_missing_token_fail_their_kind_only() {
    let schedule = "[schedule.secrets]\ntargets = [\"testbed-ssh\"]\nkeep_last = 2\n[schedule.system]\ntargets = [\"testbed-ssh-small\"]\nkeep_last = 2\n";
    let (sim, tb, _) = setup(schedule, false);
    // The capacity conditions' events are in the journal lines of the run and of watch.
    let out = sim.run(&["run"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Fill the small target: the last system archive (about 1 MiB) no longer fits.
    let filler = Path::new(tb.get("SSH_SMALL_DIR")).join("filler");
    let free = nix::sys::statvfs::statvfs(tb.get("SSH_SMALL_DIR")).unwrap();
    let room = free.blocks_available() as usize * free.fragment_size() as usize;
    let _ = std::fs::write(&filler, vec![7u8; room.saturating_sub(64 << 10)]);
    let out = sim.run(&["--json", "run", "--now"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    let run = json_of(&out, "run");
    let r = run["results"].as_array().unwrap();
    assert_eq!(
        (r[0]["kind"].as_str(), r[0]["outcome"].as_str()),
        (Some("secrets"), Some("succeeded")),
        "{run}"
    );
    assert_eq!(r[1]["error_kind"], "target.full", "{run}");
    assert_eq!(r[1]["retry"], "permanent", "{run}");
    assert!(
        r[1]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was sent"),
        "{run}"
    );
    assert_journal(&err, "target_full", "testbed-ssh-small", 1);
    assert_journal(&err, "capacity_low", "testbed-ssh-small", 1);
    assert_eq!(
        finals(&tb.files("SSH_SMALL_DIR")).len(),
        1,
        "nothing new on the small target"
    );

    // watch: capacity low is already raised (no second event), and the figures are shown.
    let out = sim.run(&["--json", "watch"]);
    let err = stderr(&out);
    assert!(out.status.success(), "a shortfall is a warning: {err}");
    assert_journal(&err, "capacity_low", "testbed-ssh-small", 0);
    assert!(err.contains("less than the recommended"), "{err}");
    let st = status(&sim);
    let small = st["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "testbed-ssh-small")
        .unwrap()
        .clone();
    assert_eq!(small["capacity"]["ok"], false, "{st}");
    let sys = st["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "system")
        .unwrap()
        .clone();
    assert_eq!(
        (
            sys["failing"].as_bool(),
            sys["last_failure"]["error_kind"].as_str()
        ),
        (Some(true), Some("target.full")),
        "{st}"
    );
    std::fs::remove_file(&filler).unwrap();
    let out = sim.run(&["watch"]);
    assert_journal(&stderr(&out), "capacity_ok", "testbed-ssh-small", 1);
    let st = status(&sim);
    assert!(
        !st["notifications"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["key"] == "target:testbed-ssh-small:capacity"),
        "{st}"
    );

    // The HSM token is gone: key device failure, nothing published, the state says why.
    let before = finals(&tb.files("SSH_DATA_DIR")).len();
    std::fs::remove_dir_all(sim.path().join("tokens")).unwrap();
    std::fs::create_dir(sim.path().join("tokens")).unwrap();
    let out = sim.run(&["--json", "run", "--kind", "secrets"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert_journal(&err, "key_device_failure", "testbed-ssh", 1);
    let files = tb.files("SSH_DATA_DIR");
    assert_eq!(finals(&files).len(), before, "{files:?}");
    assert!(temps(&files).is_empty(), "{files:?}");
    let st = status(&sim);
    let sec = st["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "secrets")
        .unwrap()
        .clone();
    assert_eq!(
        (
            sec["failing"].as_bool(),
            sec["last_failure"]["error_kind"].as_str()
        ),
        (Some(true), Some("key")),
        "{st}"
    );
    assert!(
        sec["last_success"]["archive"].is_string(),
        "the earlier success stays: {st}"
    );
}

#[test]
fn a_corrupt_state_file_is_reported_and_replaced() {
    let (sim, _tb, _) = setup(
        "[schedule.system]\ntargets = [\"testbed-ssh\"]\nkeep_last = 1\n",
        false,
    );
    std::fs::create_dir_all(sim.path().join("state")).unwrap();
    std::fs::write(state_file(&sim), b"{\"kinds\": 7").unwrap();
    let out = sim.run(&["run"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("is corrupt") && err.contains("replaced by a fresh state"),
        "{err}"
    );
    let st = status(&sim);
    assert!(
        st["kinds"][0]["last_success"]["archive"].is_string(),
        "{st}"
    );
}

/// The TPM goes away between the wrap and the signature (swtpm killed while the archive is
/// being sent): no archive is published, the temporary is gone, the kind fails with a key
/// error and a key device failure event.
#[test]
fn a_tpm_lost_during_the_run_publishes_nothing() {
    let tb = Testbed::up();
    let sim = Sim::for_backend(common::Backend::Tpm);
    tb.attach(&sim, |t| keep_targets(t, "targets.testbed-ssh"));
    let src = tb::source(&sim, 96);
    sim.edit_config(|c| {
        format!(
            "{}\n[capacity]\nmeasured_path = {:?}\n[schedule.system]\ntargets = [\"testbed-ssh\"]\nkeep_last = 2\n",
            c.replace("sources = []", &format!("sources = [{src:?}]")),
            src
        )
    });
    let child = sim
        .cmd(&["--json", "run", "--kind", "system"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The upload has started (its temporary exists): the data key was wrapped by the TPM.
    assert!(
        wait_for(60, || !temps(&tb.files("SSH_DATA_DIR")).is_empty()),
        "the upload never started"
    );
    let pid = std::fs::read_to_string(sim.path().join("swtpm.pid")).unwrap();
    let st = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("\"kind\":\"key\""), "{err}");
    assert_journal(&err, "key_device_failure", "testbed-ssh", 1);
    let files = tb.files("SSH_DATA_DIR");
    assert!(finals(&files).is_empty(), "published: {files:?}");
    assert!(temps(&files).is_empty(), "left behind: {files:?}");
}

/// `offbox run` takes the session videos last, incrementally: the second forced run sends
/// nothing, verifies what it published, and prunes by `[videos] keep_days` only what no
/// kept point needs.
#[test]
fn run_backs_up_videos_last_and_incrementally() {
    let (sim, tb, src) = setup(
        "[schedule.system]\ntargets = [\"testbed-ssh\"]\nkeep_last = 2\n[schedule.videos]\ntargets = [\"testbed-ssh\"]\nverify_after = true\n",
        false,
    );
    let rec = sim.dir.path().join("recordings");
    std::fs::create_dir_all(&rec).unwrap();
    std::fs::write(rec.join("s1.mp4"), common::pattern(100_000, 9)).unwrap();
    sim.edit_config(|c| {
        format!(
            "{c}\n[videos]\nenabled = true\nsources = [{rec:?}]\nsettle_secs = 0\nkeep_days = 1\n"
        )
    });
    let _ = src;
    let mut archives = Vec::new();
    for round in 0..2 {
        let out = sim.run(&["--json", "run", "--now"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let run = json_of(&out, "run");
        let results = run["results"].as_array().unwrap();
        let kinds: Vec<&str> = results
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["system", "videos"], "{run}");
        let v = &results[1];
        assert_eq!(v["outcome"], "succeeded", "{v}");
        assert_eq!(v["verified"], true, "{v}");
        let name = v["archive"].as_str().unwrap().to_string();
        assert!(name.contains("-videos-"), "{v}");
        if round == 1 {
            // Nothing changed: a small archive, the manifest alone.
            assert!(v["bytes"].as_u64().unwrap() < 10_000, "{v}");
        }
        archives.push(name);
    }
    // Both points are younger than keep_days: both kept.
    let files = tb.files("SSH_DATA_DIR");
    assert!(archives.iter().all(|a| files.contains(a)), "{files:?}");
    // The disabled switch refuses the scheduled kind when the config is read.
    sim.edit_config(|c| c.replace("[videos]\nenabled = true", "[videos]\nenabled = false"));
    let out = sim.run(&["run", "--now"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[schedule.videos] needs the video backup switched on"),
        "{}",
        stderr(&out)
    );
}
