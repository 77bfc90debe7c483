//! The self-target guard through the CLI: every spelling of this appliance is refused before
//! any connection, naming the rule and what the target resolved to; a real remote in a
//! network namespace is accepted.

mod common;
#[path = "common/targets.rs"]
mod tb;

use common::{stderr, Sim};
use tb::Testbed;

/// (target URL, words the refusal must contain).
fn self_targets() -> Vec<(String, &'static str)> {
    let host = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut v: Vec<(String, &'static str)> = [
        ("127.0.0.1", "loopback"),
        ("127.1", "loopback"),
        ("127.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("2130706433", "loopback"),
        ("0x7f000001", "loopback"),
        ("0x7f.1", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("0177.1", "loopback"),
        ("017700000001", "loopback"),
        ("127.0.0.1.", "loopback"),
        ("[::1]", "loopback"),
        ("[0:0:0:0:0:0:0:1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:7f00:1]", "loopback"),
        ("[::127.0.0.1]", "loopback"),
        ("[64:ff9b::7f00:1]", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("0", "unspecified"),
        ("[::]", "unspecified"),
        ("localhost", "name of this appliance"),
        ("LocalHost.", "name of this appliance"),
        ("backup.localhost", "name of this appliance"),
    ]
    .iter()
    .map(|(h, w)| (h.to_string(), *w))
    .collect();
    v.push((host.clone(), "name of this appliance"));
    v.push((host.to_uppercase(), "name of this appliance"));
    // Every address of every local interface, in its own and in an integer spelling; but not
    // those of test beds (`obx*` veths), which other tests running now add and delete.
    for a in nix::ifaddrs::getifaddrs().unwrap() {
        if a.interface_name.starts_with("obx") {
            continue;
        }
        let Some(sa) = a.address else { continue };
        if let Some(v4) = sa.as_sockaddr_in() {
            v.push((v4.ip().to_string(), "refusing"));
            v.push((u32::from(v4.ip()).to_string(), "refusing"));
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            if !v6.ip().is_unicast_link_local() {
                v.push((format!("[{}]", v6.ip()), "refusing"));
            }
        }
    }
    v
}

#[test]
fn every_self_spelling_is_refused() {
    let sim = Sim::new();
    for (host, want) in self_targets() {
        for url in [
            format!("ssh://u@{host}/srv/offbox"),
            format!("nfs://{host}/export"),
        ] {
            let out = sim.run(&["target", "check", &url]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(69), "{url}: {err}");
            assert!(err.contains("refusing target"), "{url}: {err}");
            assert!(err.contains(want), "{url}: want {want:?} in {err}");
            assert!(err.contains("resolved to"), "{url}: {err}");
        }
    }
}

#[test]
fn local_directories_are_refused() {
    let sim = Sim::new();
    for d in ["/tmp", "/var/backups", "/dev/shm", "/"] {
        let url = format!("file://{d}");
        let out = sim.run(&["target", "check", &url]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(69), "{url}: {err}");
        assert!(
            err.contains("local filesystem, not a network mount"),
            "{url}: {err}"
        );
    }
    // backup create refuses before touching keys or sources.
    let out = sim.run(&[
        "backup",
        "create",
        "--kind",
        "system",
        "--source",
        "/etc/hostname",
        "--to",
        "file:///tmp",
    ]);
    assert!(
        stderr(&out).contains("refusing target file:///tmp"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_real_remote_is_accepted() {
    let tb = Testbed::up();
    let sim = Sim::new();
    tb.attach(&sim, |t| t);
    let out = sim.run(&["target", "check", tb.get("SSH_URL")]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The host-side veth address is this appliance's own: refused.
    let (net, _) = tb.get("TESTBED_REMOTE").rsplit_once('.').unwrap();
    let local = format!("{net}.1");
    let out = sim.run(&["target", "check", &format!("ssh://u@{local}/x")]);
    assert!(
        stderr(&out).contains("address of local interface"),
        "{}",
        stderr(&out)
    );
}
