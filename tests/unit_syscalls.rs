//! The confinement of the units does not break what they run. `offbox run`, `offbox watch`
//! and `offbox selfcheck` run against a real SoftHSM2 token and the test bed's SSH, SMB and
//! NFS targets and notification servers (verify_after included) under `strace -f`; every
//! system call they make must be in the set the unit's `SystemCallFilter=` lines allow
//! (expanded by `systemd-analyze syscall-filter`), every socket family in its
//! `RestrictAddressFamilies=`, and no mapping may become writable and executable or
//! executable after the fact (`MemoryDenyWriteExecute=yes`). systemd need not be PID 1: the
//! check reads the unit files, not a running manager. Needs root (the test bed), strace and
//! systemd-analyze (tests/deps.sh).

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::Sim;

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values of every `key=` line of a unit, in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// The system calls of a group (`@name`, recursively) or a single call.
fn expand(item: &str) -> BTreeSet<String> {
    if !item.starts_with('@') {
        return BTreeSet::from([item.to_string()]);
    }
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager", item])
        .output()
        .expect("systemd-analyze (run tests/deps.sh)");
    assert!(
        out.status.success(),
        "systemd-analyze syscall-filter {item}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.starts_with('#'))
        .flat_map(expand)
        .collect()
}

/// The calls a unit's `SystemCallFilter=` lines allow: the first line is an allow list,
/// then `~` lines remove and plain lines add, as systemd applies them.
fn allowed(unit: &str) -> BTreeSet<String> {
    let lines = values(unit, "SystemCallFilter");
    assert!(
        lines.first().is_some_and(|l| !l.starts_with('~')),
        "the filter must start with an allow list: {lines:?}"
    );
    let mut set = BTreeSet::new();
    for line in lines {
        let (deny, list) = match line.strip_prefix('~') {
            Some(rest) => (true, rest.to_string()),
            None => (false, line),
        };
        for item in list.split_whitespace() {
            for call in expand(item) {
                if deny {
                    set.remove(&call);
                } else {
                    set.insert(call);
                }
            }
        }
    }
    set
}

/// Runs `offbox ARGS` of the simulator under `strace -f`; the trace text.
fn traced(sim: &Sim, args: &[&str]) -> String {
    let plain = sim.cmd(args);
    let trace = sim.path().join(format!("trace-{}", args[0]));
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-s", "0", "-o"])
        .arg(&trace)
        .arg(plain.get_program())
        .args(plain.get_args());
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().expect("strace (run tests/deps.sh)");
    // watch and selfcheck report the bed's deliberately broken targets (exit 69); what
    // matters here is that they ran to the end.
    let err = common::stderr(&out);
    assert!(
        matches!(out.status.code(), Some(0 | 69 | 75)),
        "{args:?}: {err}"
    );
    assert!(
        !err.contains("Operation not permitted"),
        "{args:?} ran into a permission error: {err}"
    );
    std::fs::read_to_string(trace).unwrap()
}

/// The system call names in a trace.
fn calls(trace: &str) -> BTreeSet<String> {
    trace
        .lines()
        .filter_map(|l| {
            let l = l.split_once(' ').map_or(l, |(_, rest)| rest).trim_start();
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty() && l[name.len()..].starts_with('(')).then_some(name)
        })
        .collect()
}

/// The socket families a trace opened (`AF_INET`, …).
fn families(trace: &str) -> BTreeSet<String> {
    trace
        .lines()
        .filter_map(|l| l.split_once("socket(AF_"))
        .map(|(_, rest)| {
            let fam: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            format!("AF_{fam}")
        })
        .collect()
}

#[test]
fn the_units_filters_allow_what_offbox_does() {
    let bed = tb::Testbed::up();
    let sim = Sim::new();
    bed.attach(&sim, |t| t);
    let src = tb::source(&sim, 2);
    let notify = std::fs::read_to_string(bed.get("NOTIFY_TOML")).unwrap();
    sim.edit_config(|c| {
        format!(
            "{}\n[capacity]\nmeasured_path = {src:?}\n[schedule.system]\ntargets = [\"testbed-ssh\", \"testbed-smb\", \"testbed-nfs\"]\nevery_hours = 1\nkeep_last = 2\nverify_after = true\n{notify}",
            c.replace("sources = []", &format!("sources = [{src:?}]")),
        )
    });
    let mut checked = Vec::new();
    for (service, args) in [
        ("offbox-run.service", &["run", "--now"][..]),
        ("offbox-watch.service", &["watch"][..]),
        ("offbox-selfcheck.service", &["selfcheck"][..]),
    ] {
        let text = unit(service);
        let allow = allowed(&text);
        let mut trace = traced(&sim, args);
        let mut used = calls(&trace);
        // A number with no name (`syscall_0x2b4a`, beyond the kernel's table) showed up once
        // in CI under load and in none of the reruns; a real call of that number would fail
        // with ENOSYS everywhere. Trace once more, and fail if it comes back.
        if used.difference(&allow).any(|c| c.starts_with("syscall_0x")) {
            trace = traced(&sim, args);
            used = calls(&trace);
        }
        assert!(used.len() > 30, "{service}: too few calls traced: {used:?}");
        let refused: Vec<&String> = used.difference(&allow).collect();
        assert!(
            refused.is_empty(),
            "{service}: `offbox {}` makes calls its filter refuses: {refused:?}",
            args.join(" ")
        );
        let families_allowed: BTreeSet<String> = values(&text, "RestrictAddressFamilies")
            .iter()
            .flat_map(|l| l.split_whitespace().map(str::to_string))
            .collect();
        let opened = families(&trace);
        assert!(
            opened.is_subset(&families_allowed),
            "{service}: opens {opened:?}, allows {families_allowed:?}"
        );
        if values(&text, "MemoryDenyWriteExecute") == ["yes"] {
            let wx: Vec<&str> = trace
                .lines()
                .filter(|l| {
                    (l.contains("mprotect(") && l.contains("PROT_EXEC"))
                        || (l.contains("mmap(") && l.contains("PROT_WRITE|PROT_EXEC"))
                })
                .collect();
            assert!(wx.is_empty(), "{service}: W^X violations: {wx:?}");
        }
        checked.push(format!("{service}: {} calls, {opened:?}", used.len()));
    }
    eprintln!("{}", checked.join("\n"));
}

#[test]
fn trace_lines_are_parsed() {
    let t = "123 openat(AT_FDCWD, \"/x\", O_RDONLY) = 3\n123 socket(AF_NETLINK, SOCK_RAW, 0) = 4\n\
             124 +++ exited with 0 +++\n125 <... read resumed>\"\", 0) = 0\n";
    assert_eq!(
        calls(t),
        BTreeSet::from(["openat".to_string(), "socket".to_string()])
    );
    assert_eq!(families(t), BTreeSet::from(["AF_NETLINK".to_string()]));
    let unit = "SystemCallFilter=@system-service\nSystemCallFilter=~@resources\nSystemCallFilter=setrlimit\n";
    let set = allowed(unit);
    assert!(set.contains("setrlimit") && set.contains("openat"));
    assert!(!set.contains("setpriority"));
}
