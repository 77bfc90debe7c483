//! Forged archives, built here as an attacker would: one who holds the recovery public key
//! (it is in the config and not secret), or the data key of one archive (learned through a
//! break-the-glass opening). Every forgery is refused with exit 3 on every path that
//! releases contents (`verify`, keyless `verify`, `restore`, `restore --share`, `decrypt` to a
//! file and to standard output, `recover` to a file, to standard output and to a directory),
//! and nothing is written. The escape hatch opens one, loudly and audited.

mod common;
#[path = "common/targets.rs"]
mod tb;

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use common::{stderr, tree, Sim};
use offbox::config::Config;
use offbox::format::signature::PublicKey;
use offbox::format::{Header, KeySlot, SignerInfo};
use offbox::jobs::recovery::{read_share_file, rebuild};
use offbox::keys::recovery::{RecoveryIdentity, RecoveryRecipient, RecoverySecret};
use offbox::keys::{open_device, SlotContext, SlotIdentity, SlotRecipient};
use offbox::secret::Key32;
use offbox::stream::{signed_message, ArchiveHead, EncryptWriter};

/// Serialises the in-process use of the PKCS#11 module (it is initialised once per process).
static DEVICE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What the forged archives carry: a tar stream with an `etc/shadow` of the attacker's.
const FORGED_SHADOW: &[u8] = b"root:$6$forged$0000:19000:0:99999:7:::\n";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn forged_payload() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(FORGED_SHADOW.len() as u64);
    h.set_mode(0o640);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_795_435_200);
    h.set_cksum();
    b.append_data(&mut h, "etc/shadow", FORGED_SHADOW).unwrap();
    zstd::encode_all(&b.into_inner().unwrap()[..], 1).unwrap()
}

/// The attacker's own P-256 key pair.
struct Attacker {
    kp: EcdsaKeyPair,
    public: PublicKey,
}

impl Attacker {
    fn new() -> Attacker {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let public = PublicKey::from_point(kp.public_key().as_ref()).unwrap();
        Attacker { kp, public }
    }

    fn signer(&self) -> Option<SignerInfo> {
        Some(SignerInfo {
            key_id: self.public.key_id(),
        })
    }
}

/// How a forged archive ends.
enum Trailer<'a> {
    /// Signed by the attacker's key.
    Attacker(&'a Attacker),
    /// These bytes (another archive's signature).
    Bytes(Vec<u8>),
    /// Nothing (the header names no signer).
    None,
}

/// Encrypts `payload` under `header` and `dek`, then appends the trailer.
fn seal(header: &Header, dek: &Key32, payload: &[u8], trailer: Trailer<'_>) -> Vec<u8> {
    let mut w = EncryptWriter::new(Vec::new(), header, dek).unwrap();
    w.write_all(payload).unwrap();
    let done = w.finish().unwrap();
    let mut bytes = done.inner;
    match trailer {
        Trailer::Attacker(a) => {
            let msg = signed_message(&done.stream_digest.unwrap());
            let sig = a.kp.sign(&SystemRandom::new(), &msg).unwrap();
            bytes.extend_from_slice(sig.as_ref());
        }
        Trailer::Bytes(b) => bytes.extend_from_slice(&b),
        Trailer::None => {}
    }
    bytes
}

/// A fresh recovery slot for `header`, as anyone holding the recovery public key can make.
fn recovery_slot(secret: &RecoverySecret, header: &Header, dek: &Key32) -> KeySlot {
    RecoveryRecipient(secret.public())
        .wrap(dek, &SlotContext::of(header))
        .unwrap()
}

/// A genuine archive of the appliance and what the attacker learned of it.
struct Genuine {
    bytes: Vec<u8>,
    header: Header,
    dek: Key32,
}

/// One forged archive, named for the messages.
struct Forgery {
    name: &'static str,
    bytes: Vec<u8>,
}

fn forgeries(sim: &Sim, genuine: &Genuine, secret: &RecoverySecret) -> Vec<Forgery> {
    let attacker = Attacker::new();
    let payload = forged_payload();
    let mut out = Vec::new();

    // 1. Only a recovery slot, made with the public recovery key; signed by a random key.
    let mut h = genuine.header.clone();
    h.archive_id = [0x66; 16];
    h.signer = attacker.signer();
    let dek = Key32::random();
    h.slots = vec![recovery_slot(secret, &h, &dek)];
    out.push(Forgery {
        name: "recovery-only, signed by a random key",
        bytes: seal(&h, &dek, &payload, Trailer::Attacker(&attacker)),
    });

    // 2. The same, unsigned.
    h.signer = None;
    h.slots = vec![recovery_slot(secret, &h, &dek)];
    out.push(Forgery {
        name: "recovery-only, unsigned",
        bytes: seal(&h, &dek, &payload, Trailer::None),
    });

    // 3. The genuine archive's device slot (its DEK is known) moved into a new archive with
    // the attacker's signer id; a fresh recovery slot beside it.
    let mut h = genuine.header.clone();
    h.signer = attacker.signer();
    let device_slot = genuine.header.slots[0].clone();
    h.slots = vec![device_slot.clone()];
    h.slots.push(recovery_slot(secret, &h, &genuine.dek));
    out.push(Forgery {
        name: "transplanted device slot, foreign signer",
        bytes: seal(&h, &genuine.dek, &payload, Trailer::Attacker(&attacker)),
    });

    // 4. The same slot in a version-1 header (a downgrade: version 1 did not bind slots).
    let mut h1 = h.clone();
    h1.version = 1;
    h1.slots = vec![device_slot];
    h1.slots.push(recovery_slot(secret, &h1, &genuine.dek));
    out.push(Forgery {
        name: "version-2 device slot in a version-1 header",
        bytes: seal(&h1, &genuine.dek, &payload, Trailer::Attacker(&attacker)),
    });

    // 5. A genuine unbound version-1 device slot (an old archive whose DEK leaked) in a new
    // version-1 archive with a foreign signer: the slot opens, the signature does not.
    // One PKCS#11 library per process: the tests of this file take turns.
    let _turn = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("SOFTHSM2_CONF", &sim.softhsm_conf);
    let cfg = Config::load(&sim.config()).unwrap();
    let mut device = open_device(&cfg.keys).unwrap();
    let old_dek = Key32::random();
    let mut h5 = genuine.header.clone();
    h5.version = 1;
    h5.archive_id = [0x55; 16];
    h5.signer = attacker.signer();
    h5.slots = vec![device.wrap(&old_dek, &SlotContext::of(&h5)).unwrap()];
    h5.slots.push(recovery_slot(secret, &h5, &old_dek));
    out.push(Forgery {
        name: "unbound version-1 device slot, foreign signer",
        bytes: seal(&h5, &old_dek, &payload, Trailer::Attacker(&attacker)),
    });

    // 6. The same archive unsigned.
    h5.signer = None;
    h5.slots = vec![device.wrap(&old_dek, &SlotContext::of(&h5)).unwrap()];
    h5.slots.push(recovery_slot(secret, &h5, &old_dek));
    out.push(Forgery {
        name: "unbound version-1 device slot, unsigned",
        bytes: seal(&h5, &old_dek, &payload, Trailer::None),
    });
    drop(device);

    // 7. The genuine header and slots, a new body under the known DEK, and our signer id
    // with a signature that cannot match (the attacker's, and the genuine trailer).
    let genuine_trailer = genuine.bytes[genuine.bytes.len() - 64..].to_vec();
    out.push(Forgery {
        name: "our signer id, genuine trailer over a new body",
        bytes: seal(
            &genuine.header,
            &genuine.dek,
            &payload,
            Trailer::Bytes(genuine_trailer),
        ),
    });
    out.push(Forgery {
        name: "our signer id, attacker's signature",
        bytes: seal(
            &genuine.header,
            &genuine.dek,
            &payload,
            Trailer::Attacker(&attacker),
        ),
    });
    out
}

/// Backs up a small tree, and learns the archive's DEK through its recovery slot, as a
/// break-the-glass opening would reveal it.
fn genuine(sim: &Sim, dir: &Path) -> (Genuine, RecoverySecret) {
    let src = dir.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/app.conf"), b"genuine\n").unwrap();
    let path = dir.join("genuine.obx");
    sim.backup("system", &src, &path);
    learn(sim, fs::read(&path).unwrap())
}

/// What a break-the-glass opening of `bytes` reveals: its header and DEK.
fn learn(sim: &Sim, bytes: Vec<u8>) -> (Genuine, RecoverySecret) {
    let shares: Vec<_> = (1..=3)
        .map(|i| read_share_file(&sim.share(i)).unwrap())
        .collect();
    let secret = rebuild(&shares).unwrap();
    let head = ArchiveHead::read_from(&mut Cursor::new(&bytes))
        .ok()
        .unwrap();
    let header = head.header;
    let ctx = SlotContext::of(&header);
    let dek = RecoveryIdentity(rebuild(&shares).unwrap())
        .unwrap(&header.slots[1], &ctx)
        .ok()
        .flatten()
        .unwrap();
    (Genuine { bytes, header, dek }, secret)
}

/// Asserts a refusal: exit 3, an error line, nothing on standard output, no forged content
/// anywhere under `out_dir`.
fn assert_refused(o: &Output, case: &str, path: &str, out_dir: &Path) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(3), "{case}: {path}: {err}");
    assert!(err.contains("offbox: error: "), "{case}: {path}: {err}");
    assert!(
        [
            "which is not a trusted signing key here",
            "the archive is not signed",
            "the archive signature does not match its content",
            "slot does not belong to this archive's header",
        ]
        .iter()
        .any(|m| err.contains(m)),
        "{case}: {path}: unclear error: {err}"
    );
    assert!(o.stdout.is_empty(), "{case}: {path}: wrote to stdout");
    assert_eq!(tree(out_dir), Vec::<String>::new(), "{case}: {path}");
}

#[test]
fn forged_archives_are_refused_on_every_path_and_nothing_is_written() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (genuine, secret) = genuine(&sim, w);
    let pem = w.join("appliance.pem");
    sim.ok(&["keys", "export-public", "--output", s(&pem)]);
    let shares: Vec<PathBuf> = (1..=3).map(|i| sim.share(i)).collect();
    let share_args: Vec<&str> = shares.iter().flat_map(|p| ["--share", s(p)]).collect();

    // The genuine archive passes every path (the control).
    let control = w.join("genuine.obx");
    sim.ok(&["verify", s(&control)]);
    let o = common::keyless_verify(&pem, &control);
    assert!(o.status.success(), "{}", stderr(&o));

    for (i, f) in forgeries(&sim, &genuine, &secret).iter().enumerate() {
        let arch = w.join(format!("forged-{i}.obx"));
        fs::write(&arch, &f.bytes).unwrap();
        let out = w.join(format!("out-{i}"));
        fs::create_dir(&out).unwrap();
        let file = out.join("payload");
        let dest = out.join("restored");
        let mut runs: Vec<(&str, Vec<&str>)> = vec![
            ("verify", vec!["verify", s(&arch)]),
            ("restore", vec!["restore", s(&arch), "--to", s(&dest)]),
            (
                "decrypt to a file",
                vec!["decrypt", s(&arch), "--output", s(&file)],
            ),
            (
                "decrypt to stdout",
                vec!["decrypt", s(&arch), "--output", "-"],
            ),
        ];
        let with_shares: Vec<(&str, Vec<&str>)> = vec![
            (
                "restore --share",
                vec!["restore", s(&arch), "--to", s(&dest)],
            ),
            (
                "recover to a file",
                vec!["recover", s(&arch), "--output", s(&file)],
            ),
            (
                "recover to stdout",
                vec!["recover", s(&arch), "--output", "-"],
            ),
            (
                "recover to a directory",
                vec!["recover", s(&arch), "--to", s(&dest)],
            ),
        ];
        for (what, mut args) in with_shares {
            args.extend(share_args.iter().copied());
            runs.push((what, args));
        }
        for (what, args) in &runs {
            let o = sim.run(args);
            assert_refused(&o, f.name, what, &out);
        }
        let o = common::keyless_verify(&pem, &arch);
        assert_refused(&o, f.name, "verify --keyless", &out);
    }
}

/// `--accept-unverified-may-be-forged` opens an archive whose signer is unknown, says so on
/// every line that matters, and leaves an audit line; `verify` has no such option.
#[test]
fn the_escape_hatch_is_loud_audited_and_never_the_default() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (genuine, secret) = genuine(&sim, w);
    let forged = forgeries(&sim, &genuine, &secret).remove(0);
    let arch = w.join("forged.obx");
    fs::write(&arch, &forged.bytes).unwrap();
    let out = w.join("payload.tar");
    let mut args = vec!["recover", s(&arch), "--output", s(&out)];
    let shares: Vec<PathBuf> = (1..=3).map(|i| sim.share(i)).collect();
    for p in &shares {
        args.extend(["--share", s(p)]);
    }
    let o = sim.run(&args);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(!out.exists());

    args.push("--accept-unverified-may-be-forged");
    let o = sim.run(&args);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("offbox: AUDIT: ")
            && err.contains("--accept-unverified-may-be-forged")
            && err.contains("MAY BE FORGED"),
        "{err}"
    );
    assert!(
        err.contains("signature NOT VERIFIED, THE CONTENTS MAY BE FORGED"),
        "{err}"
    );
    // The forged etc/shadow came out: that is what the option risks.
    let tar = fs::read(&out).unwrap();
    assert!(
        tar.windows(FORGED_SHADOW.len()).any(|x| x == FORGED_SHADOW),
        "the payload is not the forged tar"
    );

    let o = sim.run(&["verify", s(&arch), "--accept-unverified-may-be-forged"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A custodian who edits the signing-key lines of a share (to add a key of their own) is
/// caught once the quorum rebuilds the recovery key: the lines carry a tag only the ceremony
/// could make.
#[test]
fn a_share_with_an_edited_signing_key_is_refused() {
    let sim = Sim::new();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (genuine, secret) = genuine(&sim, w);
    let forged = forgeries(&sim, &genuine, &secret).remove(0);
    let arch = w.join("forged.obx");
    fs::write(&arch, &forged.bytes).unwrap();
    let attacker = Attacker::new();
    let text = fs::read_to_string(sim.share(2)).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("signing-key: "))
        .unwrap()
        .to_string();
    let evil = format!(
        "signing-key: {}",
        data_encoding::BASE64.encode(&attacker.public.spki_der())
    );
    let edited = w.join("share-2-edited.txt");
    fs::write(&edited, text.replace(&line, &evil)).unwrap();
    let out = w.join("payload");
    let mut args = vec!["recover", s(&arch), "--output", s(&out)];
    let shares = [sim.share(1), edited.clone(), sim.share(3)];
    for p in &shares {
        args.extend(["--share", s(p)]);
    }
    let o = sim.run(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "offbox: error: share {} is damaged or mistyped (its signing-key lines were changed after the ceremony (their tag does not match the recovery key); use the custodian's original file); check it character by character against the custodian's copy",
            edited.display()
        )
    );
    assert!(!out.exists());
}

/// The same forgeries on an off-box target (the test bed's SSH server): `verify --from` and
/// `restore --from`, with and without shares, refuse them and write nothing.
#[test]
fn forged_archives_on_a_target_are_refused() {
    let (sim, bed) = tb::setup();
    let src = tb::source(&sim, 1);
    let o = tb::backup_to(&sim, &src, "testbed-ssh");
    assert!(o.status.success(), "{}", stderr(&o));
    let name = tb::list(&sim, "testbed-ssh").remove(0);
    let dir = PathBuf::from(bed.get("SSH_DATA_DIR"));
    let (genuine, secret) = learn(&sim, fs::read(dir.join(&name)).unwrap());
    let work = tempfile::tempdir().unwrap();
    let out = work.path();
    let shares: Vec<PathBuf> = (1..=3).map(|i| sim.share(i)).collect();
    for (i, f) in forgeries(&sim, &genuine, &secret).iter().enumerate() {
        // A name of this appliance's form, beside the genuine archive.
        let forged_name = name.replace(".obx", &format!("{i}.obx"));
        fs::write(dir.join(&forged_name), &f.bytes).unwrap();
        let dest = out.join("restored");
        let o = sim.run(&["verify", "--from", "testbed-ssh", &forged_name]);
        assert_refused(&o, f.name, "verify --from", out);
        let mut args = vec![
            "restore",
            "--from",
            "testbed-ssh",
            &forged_name,
            "--to",
            s(&dest),
        ];
        let o = sim.run(&args);
        assert_refused(&o, f.name, "restore --from", out);
        for p in &shares {
            args.extend(["--share", s(p)]);
        }
        let o = sim.run(&args);
        assert_refused(&o, f.name, "restore --from --share", out);
        fs::remove_file(dir.join(&forged_name)).unwrap();
    }
    // The genuine archive still restores from the target.
    sim.ok(&["verify", "--from", "testbed-ssh", &name]);
}
