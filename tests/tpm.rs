//! Tests of the TPM custodian against private swtpm instances on 127.0.0.1: round trip,
//! PCR policy, another TPM, rotation, signing, errors, lockout, command counts, bus capture.

#![cfg(feature = "tpm")]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use offbox::format::{ArchiveKind, KeySlot};
use offbox::keys::tpm::{TpmConfig, TpmCustodian, TpmError};
use offbox::keys::{Device, KeyError, SlotContext, SlotIdentity, SlotRecipient};
use offbox::secret::Key32;

/// One swtpm process with its state in a temporary directory; killed by PID on drop.
struct Swtpm {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Swtpm {
    fn start() -> Swtpm {
        for _ in 0..50 {
            let port = free_port_pair();
            let dir = tempfile::tempdir().unwrap();
            if let Some(child) = spawn_swtpm(dir.path(), port) {
                return Swtpm {
                    child,
                    port,
                    _dir: dir,
                };
            }
        }
        panic!("could not start swtpm");
    }

    /// Power cycle: same state directory and ports (persistent objects survive, PCRs reset).
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..100 {
            if let Some(child) = spawn_swtpm(self._dir.path(), self.port) {
                self.child = child;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("could not restart swtpm");
    }

    fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    fn config(&self, pcrs: &[u8]) -> TpmConfig {
        TpmConfig {
            tcti: self.tcti(),
            pcrs: pcrs.to_vec(),
        }
    }

    fn open(&self, pcrs: &[u8]) -> TpmCustodian {
        TpmCustodian::open(&self.config(pcrs)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn tpm2_tool(&self, args: &[&str]) {
        let status = Command::new(args[0])
            .args(&args[1..])
            .env("TPM2TOOLS_TCTI", self.tcti())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?} failed");
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_swtpm(dir: &std::path::Path, port: u16) -> Option<Child> {
    let mut child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", dir.display()))
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm not installed (apt-get install swtpm swtpm-tools)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None; // lost a port race
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A port P such that P and P+1 were both free a moment ago.
fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

const ID: [u8; 16] = [7; 16];
const SALT: [u8; 32] = [9; 32];

fn ctx() -> SlotContext<'static> {
    SlotContext {
        archive_id: &ID,
        salt: &SALT,
        kind: ArchiveKind::System,
        binding: Some([0x5b; 32]),
    }
}

fn tpm_err(e: KeyError) -> TpmError {
    match e {
        KeyError::Tpm(t) => t,
        other => panic!("not a TPM error: {other}"),
    }
}

fn slot_version(slot: &KeySlot) -> u32 {
    match slot {
        KeySlot::Tpm { key_version, .. } => *key_version,
        _ => panic!("not a TPM slot"),
    }
}

#[test]
fn round_trip_and_init_twice() {
    let tpm = Swtpm::start();
    let mut c = tpm.open(&[]);
    let err = c.wrap(&Key32::random(), &ctx()).err().map(tpm_err).unwrap();
    assert!(matches!(err, TpmError::NotInitialized { .. }), "{err}");

    let v = c.init(false).unwrap();
    assert_eq!((v.version, v.current), (1, true));
    let err = tpm_err(c.init(false).unwrap_err());
    assert!(
        matches!(err, TpmError::AlreadyInitialized { version: 1, .. }),
        "{err}"
    );
    eprintln!("init twice: {err}");

    let dek = Key32::random();
    let slot = c.wrap(&dek, &ctx()).unwrap();
    let back = c.unwrap(&slot, &ctx()).unwrap().unwrap();
    assert_eq!(back.expose(), dek.expose());

    // Non-TPM slots are not ours.
    let other = KeySlot::Recovery {
        key_id: [0; 8],
        ephemeral: [0; 32],
        wrapped: vec![],
    };
    assert!(c.unwrap(&other, &ctx()).unwrap().is_none());

    // Survives a reconnect and a swtpm restart is covered by reconnecting: keys are persistent.
    drop(c);
    let mut c = tpm.open(&[]);
    let back = c.unwrap(&slot, &ctx()).unwrap().unwrap();
    assert_eq!(back.expose(), dek.expose());

    // A tampered private blob is a bad slot, not a crash.
    let KeySlot::Tpm {
        key_version,
        parent_name,
        pcrs,
        public,
        mut private,
    } = slot.clone()
    else {
        unreachable!()
    };
    let n = private.len();
    private[n - 1] ^= 1;
    let bad = KeySlot::Tpm {
        key_version,
        parent_name,
        pcrs,
        public,
        private,
    };
    let err = tpm_err(c.unwrap(&bad, &ctx()).err().unwrap());
    assert!(matches!(err, TpmError::BadSlot { .. }), "{err}");
    eprintln!("tampered: {err}");

    // init --replace never reuses a version number: it makes version 2 and evicts version 1,
    // so the old slots open only through the recovery shares now.
    let v = c.init(true).unwrap();
    assert_eq!(v.version, 2);
    let err = tpm_err(c.unwrap(&slot, &ctx()).err().unwrap());
    assert!(
        matches!(err, TpmError::VersionMissing { version: 1, .. }),
        "{err}"
    );

    let st = c.status().unwrap();
    eprintln!("status: {}", serde_json::to_string(&st).unwrap());
    assert_eq!(st.backend, "tpm");
    assert_eq!(st.versions.len(), 1);
    assert_eq!(st.versions[0].version, 2);
}

#[test]
fn pcr_policy() {
    let mut tpm = Swtpm::start();
    let mut c = tpm.open(&[16]);
    c.init(false).unwrap();
    let dek = Key32::random();
    let slot = c.wrap(&dek, &ctx()).unwrap();
    match &slot {
        KeySlot::Tpm { pcrs, .. } => assert_eq!(pcrs, &[16]),
        _ => unreachable!(),
    }
    // Unchanged PCR: opens (also with a custodian configured without PCRs: the slot decides).
    assert_eq!(
        c.unwrap(&slot, &ctx()).unwrap().unwrap().expose(),
        dek.expose()
    );
    drop(c);
    let mut c = tpm.open(&[]);
    assert_eq!(
        c.unwrap(&slot, &ctx()).unwrap().unwrap().expose(),
        dek.expose()
    );

    // Altering the slot's PCR list does not bypass the policy.
    let KeySlot::Tpm {
        key_version,
        parent_name,
        public,
        private,
        ..
    } = slot.clone()
    else {
        unreachable!()
    };
    let stripped = KeySlot::Tpm {
        key_version,
        parent_name,
        pcrs: vec![],
        public,
        private,
    };
    let err = tpm_err(c.unwrap(&stripped, &ctx()).err().unwrap());
    assert!(matches!(err, TpmError::BadSlot { .. }), "{err}");
    drop(c);

    tpm.tpm2_tool(&["tpm2_pcrextend", &format!("16:sha256={}", "ab".repeat(32))]);
    let mut c = tpm.open(&[16]);
    let err = tpm_err(c.unwrap(&slot, &ctx()).err().unwrap());
    assert!(matches!(err, TpmError::PcrChanged { .. }), "{err}");
    eprintln!("pcr: {err}");
    drop(c);

    // Resetting the debug PCR restores the state the slot was sealed against.
    tpm.tpm2_tool(&["tpm2_pcrreset", "16"]);
    let mut c = tpm.open(&[16]);
    assert_eq!(
        c.unwrap(&slot, &ctx()).unwrap().unwrap().expose(),
        dek.expose()
    );
    drop(c);

    // So does a reboot; the persistent keys survive it.
    tpm.tpm2_tool(&["tpm2_pcrextend", &format!("16:sha256={}", "ab".repeat(32))]);
    tpm.restart();
    let mut c = tpm.open(&[16]);
    assert_eq!(
        c.unwrap(&slot, &ctx()).unwrap().unwrap().expose(),
        dek.expose()
    );
}

#[test]
fn slot_from_another_tpm() {
    let a = Swtpm::start();
    let b = Swtpm::start();
    let mut ca = a.open(&[]);
    ca.init(false).unwrap();
    let slot = ca.wrap(&Key32::random(), &ctx()).unwrap();

    let mut cb = b.open(&[]);
    let err = tpm_err(cb.unwrap(&slot, &ctx()).err().unwrap());
    assert!(
        matches!(err, TpmError::VersionMissing { version: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("another TPM"));
    eprintln!("B uninitialized: {err}");

    cb.init(false).unwrap();
    let err = tpm_err(cb.unwrap(&slot, &ctx()).err().unwrap());
    assert!(matches!(err, TpmError::OtherTpm { version: 1 }), "{err}");
    eprintln!("B initialized: {err}");
}

#[test]
fn rotate_and_retire() {
    let tpm = Swtpm::start();
    let mut c = tpm.open(&[]);
    c.init(false).unwrap();
    let dek1 = Key32::random();
    let slot1 = c.wrap(&dek1, &ctx()).unwrap();
    assert_eq!(slot_version(&slot1), 1);

    let v2 = c.rotate().unwrap();
    assert_eq!((v2.version, v2.current), (2, true));
    assert_eq!(
        c.unwrap(&slot1, &ctx()).unwrap().unwrap().expose(),
        dek1.expose()
    );
    let dek2 = Key32::random();
    let slot2 = c.wrap(&dek2, &ctx()).unwrap();
    assert_eq!(slot_version(&slot2), 2);
    let (
        KeySlot::Tpm {
            parent_name: n1, ..
        },
        KeySlot::Tpm {
            parent_name: n2, ..
        },
    ) = (&slot1, &slot2)
    else {
        unreachable!()
    };
    assert_ne!(n1, n2, "versions must be different keys");

    let err = c.retire(2).unwrap_err();
    assert!(
        matches!(err, TpmError::RetireCurrent { version: 2 }),
        "{err}"
    );
    eprintln!("retire current: {err}");

    c.retire(1).unwrap();
    let err = tpm_err(c.unwrap(&slot1, &ctx()).err().unwrap());
    assert!(
        matches!(err, TpmError::VersionMissing { version: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("retired"));
    assert_eq!(
        c.unwrap(&slot2, &ctx()).unwrap().unwrap().expose(),
        dek2.expose()
    );

    // A fresh connection sees the same state: it lives in the TPM.
    drop(c);
    let mut c = tpm.open(&[]);
    let st = c.status().unwrap();
    let versions: Vec<(u32, bool)> = st.versions.iter().map(|v| (v.version, v.current)).collect();
    assert_eq!(versions, vec![(2, true)]);
    let err = c.retire(1).unwrap_err();
    assert!(matches!(err, TpmError::VersionMissing { .. }), "{err}");
    let v3 = c.rotate().unwrap();
    assert_eq!(v3.version, 3);
}

#[test]
fn sign_and_verify_with_aws_lc() {
    use aws_lc_rs::digest::{digest, SHA256};
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    let tpm = Swtpm::start();
    let mut c = tpm.open(&[]);
    let err = c.sign_digest(&[0; 32]).unwrap_err();
    assert!(matches!(err, TpmError::NoSigningKey { .. }), "{err}");
    c.init(false).unwrap();
    let spki = c.signing_public_key_spki_der().unwrap();
    assert_eq!(spki.len(), 91);

    let m = b"offbox archive trailer";
    let d: [u8; 32] = digest(&SHA256, m).as_ref().try_into().unwrap();
    let sig = c.sign_digest(&d).unwrap();
    let point = &spki[26..];
    assert_eq!(point[0], 4);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(m, &sig)
        .expect("signature verifies");
    assert!(UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(b"other", &sig)
        .is_err());

    // openssl accepts the SPKI.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pub.der");
    std::fs::write(&path, &spki).unwrap();
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("prime256v1"));

    // Deterministic: init --replace re-creates the same signing key.
    c.init(true).unwrap();
    drop(c);
    let mut c = tpm.open(&[]);
    assert_eq!(c.signing_public_key_spki_der().unwrap(), spki);
}

#[test]
fn config_and_unreachable_errors() {
    let cfg: TpmConfig = toml::from_str("tcti = \"device:/dev/tpmrm0\"").unwrap();
    assert!(cfg.pcrs.is_empty());
    assert!(toml::from_str::<TpmConfig>("tcti = \"x\"\npcr = [1]").is_err());

    let err = TpmCustodian::open(&TpmConfig {
        tcti: "bogus".into(),
        pcrs: vec![],
    })
    .err()
    .unwrap();
    assert!(matches!(err, TpmError::Config { .. }), "{err}");
    let err = TpmCustodian::open(&TpmConfig {
        tcti: "device:/dev/tpmrm0".into(),
        pcrs: vec![24],
    })
    .err()
    .unwrap();
    assert!(matches!(err, TpmError::Config { .. }), "{err}");

    let port = free_port_pair();
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let err = TpmCustodian::open(&TpmConfig { tcti, pcrs: vec![] })
        .err()
        .unwrap();
    assert!(matches!(err, TpmError::Unreachable { .. }), "{err}");
    eprintln!("unreachable: {err}");
    let err = TpmCustodian::open(&TpmConfig {
        tcti: "device:/nonexistent/tpmrm0".into(),
        pcrs: vec![],
    })
    .err()
    .unwrap();
    assert!(matches!(err, TpmError::Unreachable { .. }), "{err}");
    eprintln!("unreachable: {err}");

    // The TPM goes away between commands.
    let tpm = Swtpm::start();
    let mut c = tpm.open(&[]);
    c.init(false).unwrap();
    let slot = c.wrap(&Key32::random(), &ctx()).unwrap();
    drop(tpm);
    let err = tpm_err(c.unwrap(&slot, &ctx()).err().unwrap());
    assert!(matches!(err, TpmError::Unreachable { .. }), "{err}");
    eprintln!("lost: {err}");
}

#[test]
fn dictionary_attack_lockout_does_not_block_offbox() {
    // Lock the TPM out with a DA-protected key and a wrong password; offbox's keys are noDA.
    let tpm = Swtpm::start();
    tpm.tpm2_tool(&[
        "tpm2_dictionarylockout",
        "--setup-parameters",
        "--max-tries=1",
        "--recovery-time=600",
        "--lockout-recovery-time=600",
    ]);
    let mut c = tpm.open(&[16]);
    c.init(false).unwrap();
    let slot = c.wrap(&Key32::random(), &ctx()).unwrap();
    drop(c);
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    // swtpm has no resource manager: flush what each tool leaves loaded.
    let flushed = |tool: &[&str]| {
        tpm.tpm2_tool(tool);
        tpm.tpm2_tool(&["tpm2_flushcontext", "-t"]);
    };
    flushed(&["tpm2_createprimary", "-C", "o", "-c", &p("prim.ctx")]);
    flushed(&[
        "tpm2_create",
        "-C",
        &p("prim.ctx"),
        "-p",
        "right",
        "-u",
        &p("k.pub"),
        "-r",
        &p("k.priv"),
        "-a",
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
    ]);
    flushed(&[
        "tpm2_load",
        "-C",
        &p("prim.ctx"),
        "-u",
        &p("k.pub"),
        "-r",
        &p("k.priv"),
        "-c",
        &p("k.ctx"),
    ]);
    std::fs::write(p("m"), b"m").unwrap();
    for _ in 0..2 {
        let _ = Command::new("tpm2_sign")
            .args([
                "-c",
                &p("k.ctx"),
                "-p",
                "wrong",
                "-g",
                "sha256",
                "-o",
                &p("sig"),
                &p("m"),
            ])
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .stderr(Stdio::null())
            .status();
        tpm.tpm2_tool(&["tpm2_flushcontext", "-t"]);
    }
    let out = Command::new("tpm2_getcap")
        .arg("properties-variable")
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("inLockout:                 1"));
    let mut c = tpm.open(&[16]);
    assert!(c.unwrap(&slot, &ctx()).unwrap().is_some());
    c.rotate().unwrap();
    c.wrap(&Key32::random(), &ctx()).unwrap();
    c.sign_digest(&[5; 32]).unwrap();
}

#[test]
fn timings() {
    let tpm = Swtpm::start();
    for pcrs in [&[][..], &[16][..]] {
        let mut c = tpm.open(pcrs);
        if pcrs.is_empty() {
            c.init(false).unwrap();
        }
        let n = 20;
        let dek = Key32::random();
        // The first operation also looks up the persistent key (one TPM2_ReadPublic).
        let c0 = c.commands_sent();
        let slot = c.wrap(&dek, &ctx()).unwrap();
        let first_wrap = c.commands_sent() - c0;
        let c0 = c.commands_sent();
        c.unwrap(&slot, &ctx()).unwrap().unwrap();
        let first_unwrap = c.commands_sent() - c0;

        let (c0, t0) = (c.commands_sent(), Instant::now());
        let mut slots = Vec::new();
        for _ in 0..n {
            slots.push(c.wrap(&dek, &ctx()).unwrap());
        }
        let wrap_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let wrap_cmds = (c.commands_sent() - c0) as f64 / n as f64;
        let (c0, t0) = (c.commands_sent(), Instant::now());
        for s in &slots {
            assert_eq!(c.unwrap(s, &ctx()).unwrap().unwrap().expose(), dek.expose());
        }
        let unwrap_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let unwrap_cmds = (c.commands_sent() - c0) as f64 / n as f64;
        let t0 = Instant::now();
        let d = [1u8; 32];
        let c0 = c.commands_sent();
        for _ in 0..n {
            c.sign_digest(&d).unwrap();
        }
        let sign_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let sign_cmds = (c.commands_sent() - c0) as f64 / n as f64;
        let t0 = Instant::now();
        let _ = tpm.open(pcrs);
        let open_ms = t0.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "pcrs={pcrs:?}: wrap {wrap_cmds} cmds {wrap_ms:.2} ms (first {first_wrap} cmds); unwrap {unwrap_cmds} cmds {unwrap_ms:.2} ms (first {first_unwrap} cmds); sign {sign_cmds} cmds {sign_ms:.2} ms; open {open_ms:.2} ms"
        );
        drop(c);
    }
}

/// A recording TCP proxy in front of a swtpm (data port and control port P+1).
struct Proxy {
    port: u16,
    to_tpm: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    from_tpm: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        let to_tpm = Arc::new(Mutex::new(Vec::new()));
        let from_tpm = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = loop {
            let a = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = a.local_addr().unwrap().port();
            if let Ok(b) = TcpListener::bind(("127.0.0.1", port + 1)) {
                break (a, b);
            }
        };
        let port = a.local_addr().unwrap().port();
        for (listener, dest, record) in [(a, target, true), (b, target + 1, false)] {
            let (up, down) = (to_tpm.clone(), from_tpm.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let client = client.unwrap();
                    let server = TcpStream::connect(("127.0.0.1", dest)).unwrap();
                    for (mut from, mut to, log) in [
                        (
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            up.clone(),
                        ),
                        (server, client, down.clone()),
                    ] {
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 8192];
                            while let Ok(n) = from.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                // Recorded before it goes on: by the time the other side
                                // has it (and the client has its answer), it is in the log.
                                if record {
                                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                                }
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(std::net::Shutdown::Write);
                        });
                    }
                }
            });
        }
        Proxy {
            port,
            to_tpm,
            from_tpm,
        }
    }

    /// Takes the recorded traffic: (command codes sent, bytes to the TPM, bytes from it).
    fn take(&self) -> (Vec<&'static str>, Vec<u8>, Vec<u8>) {
        let up = std::mem::take(&mut *self.to_tpm.lock().unwrap());
        let down = std::mem::take(&mut *self.from_tpm.lock().unwrap());
        let mut codes = Vec::new();
        let mut rest = &up[..];
        while rest.len() >= 10 {
            let size = u32::from_be_bytes(rest[2..6].try_into().unwrap()) as usize;
            let cc = u32::from_be_bytes(rest[6..10].try_into().unwrap());
            codes.push(match cc {
                0x120 => "EvictControl",
                0x131 => "CreatePrimary",
                0x153 => "Create",
                0x157 => "Load",
                0x15D => "Sign",
                0x15E => "Unseal",
                0x165 => "FlushContext",
                0x173 => "ReadPublic",
                0x176 => "StartAuthSession",
                0x17A => "GetCapability",
                0x17E => "PCR_Read",
                0x17F => "PolicyPCR",
                _ => "other",
            });
            rest = &rest[size.min(rest.len())..];
        }
        (codes, up, down)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn dek_never_crosses_the_bus_in_clear_and_nothing_leaks() {
    let tpm = Swtpm::start();
    let proxy = Proxy::start(tpm.port);
    for pcrs in [&[][..], &[16, 23][..]] {
        let cfg = TpmConfig {
            tcti: format!("swtpm:host=127.0.0.1,port={}", proxy.port),
            pcrs: pcrs.to_vec(),
        };
        let mut c = TpmCustodian::open(&cfg).unwrap();
        if pcrs.is_empty() {
            c.init(false).unwrap();
        }
        let (codes, _, _) = proxy.take();
        eprintln!("open (+init): {codes:?}");
        let dek = Key32::random();
        let n0 = c.commands_sent();
        let slot = c.wrap(&dek, &ctx()).unwrap();
        let counted = c.commands_sent() - n0;
        let (codes, up, down) = proxy.take();
        eprintln!("wrap pcrs={pcrs:?}: {codes:?}");
        assert_eq!(codes.len() as u64, counted);
        assert!(
            !contains(&up, dek.expose()) && !contains(&down, dek.expose()),
            "DEK in clear on the bus (wrap)"
        );
        let n0 = c.commands_sent();
        let back = c.unwrap(&slot, &ctx()).unwrap().unwrap();
        let counted = c.commands_sent() - n0;
        assert_eq!(back.expose(), dek.expose());
        let (codes, up, down) = proxy.take();
        eprintln!("unwrap pcrs={pcrs:?}: {codes:?}");
        assert_eq!(codes.len() as u64, counted);
        assert!(
            !contains(&up, dek.expose()) && !contains(&down, dek.expose()),
            "DEK in clear on the bus (unwrap)"
        );

        // Control: the signed digest does cross in clear, so the recording works.
        let d = [0x5au8; 32];
        c.sign_digest(&d).unwrap();
        let (codes, up, _) = proxy.take();
        eprintln!("sign: {codes:?}");
        assert!(contains(&up, &d));

        // Error paths flush too: a tampered slot, then (with PCRs) a changed PCR.
        let KeySlot::Tpm {
            key_version,
            parent_name,
            pcrs: sp,
            public,
            mut private,
        } = slot.clone()
        else {
            unreachable!()
        };
        let last = private.len() - 1;
        private[last] ^= 1;
        let bad = KeySlot::Tpm {
            key_version,
            parent_name,
            pcrs: sp,
            public,
            private,
        };
        assert!(c.unwrap(&bad, &ctx()).is_err());
        if !pcrs.is_empty() {
            tpm.tpm2_tool(&["tpm2_pcrextend", &format!("23:sha256={}", "cd".repeat(32))]);
            let err = tpm_err(c.unwrap(&slot, &ctx()).err().unwrap());
            assert!(matches!(err, TpmError::PcrChanged { .. }), "{err}");
            assert!(err.to_string().contains("PCR 16, 23"));
        }
        // The custodian is still open: nothing transient may be left in the TPM.
        for cap in [
            "handles-transient",
            "handles-loaded-session",
            "handles-saved-session",
        ] {
            let out = Command::new("tpm2_getcap")
                .arg(cap)
                .env("TPM2TOOLS_TCTI", tpm.tcti())
                .output()
                .unwrap();
            assert!(out.status.success());
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.trim().is_empty(), "{cap} left: {text}");
        }
        let (_, _, _) = proxy.take();
    }
}
