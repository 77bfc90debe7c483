//! `backup create`: packs or streams a payload, compresses it, and encrypts it into an
//! archive whose data key is wrapped by every given custodian.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::format::signature::prehash;
use crate::format::signature::PublicKey;
use crate::format::trailer::{message_v3, TrailerV3};
use crate::format::SignerInfo;
use crate::format::{ArchiveKind, Chain, Compression, Header, VERSION, VERSION_CHAIN};
use crate::keys::{Device, SlotContext, SlotRecipient};
use crate::payload::exclude::Excludes;
use crate::payload::pack::pack;
use crate::payload::Notice;
pub use crate::payload::TailWrite;
use crate::progress::Meter;
use crate::secret::{random_bytes, Dek};
use crate::stream::{signed_message, EncryptWriter};

use super::sink::Sink;
use super::JobError;

/// What goes into the archive.
pub enum Payload {
    /// A tar stream of these paths (system and video backups).
    Tree {
        /// Files and directories.
        sources: Vec<PathBuf>,
        /// Exclude patterns.
        excludes: Excludes,
    },
    /// An opaque byte stream (the secrets export).
    Stream(Box<dyn Read>),
    /// A payload that ends with a tail (an incremental video backup and its manifest),
    /// written as a version-3 archive of chain [`BackupOptions::chain`].
    Chained(Box<dyn ChainedPayload>),
}

/// A payload with a tail: it writes its body, calls [`TailWrite::start_tail`] once, then
/// writes the tail (see `crate::format::trailer`).
pub trait ChainedPayload {
    /// Writes the payload; returns the entry count and the notices.
    fn write(
        &mut self,
        out: &mut dyn TailWrite,
        meter: &Meter,
    ) -> io::Result<(u64, Vec<crate::payload::Notice>)>;
}

/// Settings of one backup run.
pub struct BackupOptions {
    /// The archive kind.
    pub kind: ArchiveKind,
    /// The payload.
    pub payload: Payload,
    /// The appliance id recorded in the header.
    pub appliance_id: String,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// zstd level.
    pub zstd_level: i32,
    /// zstd worker threads (0: one per core).
    pub threads: u32,
    /// The archive id, random ([`BackupOptions::new_archive_id`]): chosen before the archive
    /// is written, so a target that names its object when the upload begins (S3) can use
    /// the final name.
    pub archive_id: [u8; 16],
    /// The chain of a [`Payload::Chained`] archive.
    pub chain: Option<Chain>,
    /// False to store the payload uncompressed (already compressed recordings).
    pub compress: bool,
    /// The device's signing key when the caller already read it (one device operation
    /// fewer); `None` to read it here.
    pub signing_key: Option<PublicKey>,
}

impl BackupOptions {
    /// A fresh random archive id.
    pub fn new_archive_id() -> [u8; 16] {
        random_bytes::<16>()
    }

    /// The archive id in hex, as the header and archive names show it.
    pub fn archive_id_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.archive_id)
    }
}

/// The result of a backup, for the confirmation line and `--json`.
#[derive(Debug, serde::Serialize)]
pub struct BackupSummary {
    /// The archive kind.
    pub kind: &'static str,
    /// The archive id (hex).
    pub archive_id: String,
    /// Plaintext bytes read.
    pub bytes_in: u64,
    /// Archive bytes written.
    pub bytes_out: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Plaintext throughput in bytes per second.
    pub bytes_per_second: f64,
    /// Entries in the tar payload (0 for a stream payload).
    pub entries: u64,
    /// Kinds of the key slots written.
    pub slots: Vec<&'static str>,
    /// Operations on the HSM or TPM: wrap the DEK, read the signing key, sign. Constant,
    /// whatever the archive size.
    pub device_operations: u32,
    /// Time spent in those operations.
    pub device_seconds: f64,
    /// Things the operator should know (vanished or changed files...).
    pub notices: Vec<Notice>,
    /// The files among `notices` that changed while they were read: how many, and the
    /// first few names.
    pub changed_while_read: crate::payload::ChangedFiles,
}

struct Counting<'a, W> {
    inner: W,
    meter: &'a Meter,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.meter.add_out(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one archive to `out`: the data key is wrapped by `device` and by every custodian
/// in `others` (the recovery key), and the archive is signed by `device`'s signing key. On
/// error the stream written so far has no final segment or no signature, so no reader
/// accepts it as an archive.
pub fn create<W: Write>(
    device: &mut dyn Device,
    others: &mut [&mut dyn SlotRecipient],
    opts: BackupOptions,
    out: W,
    meter: Arc<Meter>,
) -> Result<(W, BackupSummary), JobError> {
    let t0 = Instant::now();
    if let Payload::Tree { sources, .. } = &opts.payload {
        if sources.is_empty() {
            return Err(JobError::NoSources);
        }
    }
    let dek = Dek::random();
    let t_device = Instant::now();
    let known_key = opts.signing_key.is_some();
    let signing_key = match opts.signing_key.clone() {
        Some(k) => k,
        None => device.signing_key()?,
    };
    let header = sealed_header(&opts, &signing_key, &dek, device, others)?;
    let mut device_time = t_device.elapsed();
    let slot_names = header.slots.iter().map(|s| s.kind_name()).collect();
    let counting = Counting {
        inner: out,
        meter: &meter,
    };
    let enc = EncryptWriter::new(counting, &header, &dek)
        .map_err(|e| JobError::io("writing the archive header", e))?;
    drop(dek);
    let (mut done, entries, notices) = match opts.payload {
        Payload::Chained(mut p) => {
            let mut sink = Sink::new(enc, opts.compress.then_some(opts.zstd_level), opts.threads)?;
            let (entries, notices) = p
                .write(&mut sink, &meter)
                .map_err(|e| JobError::io("writing the archive", e))?;
            (sink.finish()?, entries, notices)
        }
        payload => {
            let z = compressor(enc, opts.zstd_level, opts.threads)?;
            let (z, entries, notices) = write_payload(z, payload, &meter)?;
            let enc = z
                .finish()
                .map_err(|e| JobError::io("finishing compression", e))?;
            let done = enc
                .finish()
                .map_err(|e| JobError::io("writing the archive", e))?;
            (done, entries, notices)
        }
    };
    let t_sign = Instant::now();
    let digest = done.stream_digest.expect("signed archives keep a digest");
    let signature = match header.version {
        VERSION_CHAIN => {
            let (tail_start, tail_digest) = done.tail.ok_or_else(|| {
                JobError::io(
                    "writing the archive",
                    io::Error::other("the chained payload wrote no tail"),
                )
            })?;
            let m = message_v3(&done.header_digest, &digest, tail_start, &tail_digest);
            TrailerV3 {
                stream_digest: digest,
                tail_start,
                tail_digest,
                signature: sign(device, &signing_key, &m)?,
            }
            .encode()
        }
        _ => sign(device, &signing_key, &signed_message(&digest))?.to_vec(),
    };
    device_time += t_sign.elapsed();
    done.inner
        .write_all(&signature)
        .and_then(|_| done.inner.flush())
        .map_err(|e| JobError::io("writing the archive signature", e))?;
    let bytes_out = done.bytes_out + signature.len() as u64;
    let seconds = t0.elapsed().as_secs_f64();
    let plain = meter.bytes_in.load(std::sync::atomic::Ordering::Relaxed);
    Ok((
        done.inner.inner,
        BackupSummary {
            kind: opts.kind.name(),
            archive_id: header.archive_id_hex(),
            bytes_in: plain,
            bytes_out,
            seconds,
            bytes_per_second: plain as f64 / seconds.max(1e-9),
            entries,
            slots: slot_names,
            device_operations: if known_key { 2 } else { 3 },
            device_seconds: device_time.as_secs_f64(),
            changed_while_read: crate::payload::ChangedFiles::of(&notices),
            notices,
        },
    ))
}

/// The header of a new archive, its slots filled. Every slot is bound to the header's other
/// fields (format version 2), so the header is complete but for its slots before any key is
/// wrapped.
fn sealed_header(
    opts: &BackupOptions,
    signing_key: &PublicKey,
    dek: &Dek,
    device: &mut dyn Device,
    others: &mut [&mut dyn SlotRecipient],
) -> Result<Header, JobError> {
    let mut header = Header {
        version: if opts.chain.is_some() {
            VERSION_CHAIN
        } else {
            VERSION
        },
        kind: opts.kind,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
        appliance_id: opts.appliance_id.clone(),
        archive_id: opts.archive_id,
        compression: if opts.compress {
            Compression::Zstd {
                level: opts.zstd_level,
            }
        } else {
            Compression::None
        },
        segment_size: opts.segment_size,
        salt: random_bytes::<32>(),
        nonce_prefix: random_bytes::<7>(),
        slots: Vec::new(),
        signer: Some(SignerInfo {
            key_id: signing_key.key_id(),
        }),
        chain: opts.chain.clone(),
    };
    let mut slots = Vec::with_capacity(1 + others.len());
    let ctx = SlotContext::of(&header);
    slots.push(device.wrap(dek, &ctx)?);
    for c in others.iter_mut() {
        slots.push(c.wrap(dek, &ctx)?);
    }
    header.slots = slots;
    Ok(header)
}

/// A zstd encoder over `enc` at `level`, with `threads` workers (0: one per core).
pub(crate) fn compressor<W: Write>(
    enc: W,
    level: i32,
    threads: u32,
) -> Result<zstd::stream::write::Encoder<'static, W>, JobError> {
    let mut z = zstd::stream::write::Encoder::new(enc, level)
        .map_err(|e| JobError::io("starting zstd", e))?;
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    } else {
        threads
    };
    if threads > 1 {
        z.multithread(threads)
            .map_err(|e| JobError::io("starting zstd workers", e))?;
    }
    Ok(z)
}

/// Writes the payload into `z`: returns it with the entry count and the notices.
fn write_payload<W: Write>(
    z: W,
    payload: Payload,
    meter: &Meter,
) -> Result<(W, u64, Vec<crate::payload::Notice>), JobError> {
    match payload {
        Payload::Tree { sources, excludes } => {
            let (z, stats) = pack(&sources, &excludes, z, meter)?;
            Ok((z, stats.entries, stats.notices))
        }
        Payload::Chained(_) => unreachable!("chained payloads are written by `create`"),
        Payload::Stream(mut r) => {
            let mut z = z;
            let mut counted = CountingReader {
                inner: &mut r,
                meter,
            };
            io::copy(&mut counted, &mut z).map_err(|e| JobError::io("streaming the payload", e))?;
            Ok((z, 0, Vec::new()))
        }
    }
}

/// Signs `message` on the device, and checks the signature with the public key: a
/// signature the key does not accept would make a useless archive.
fn sign(
    device: &mut dyn Device,
    signing_key: &PublicKey,
    message: &[u8],
) -> Result<[u8; 64], JobError> {
    let signature = device.sign_digest(&prehash(message))?;
    signing_key
        .verify(message, &signature)
        .map_err(|e| JobError::DeviceSignature(e.to_string()))?;
    Ok(signature)
}

struct CountingReader<'a, R> {
    inner: R,
    meter: &'a Meter,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add_in(n as u64);
        Ok(n)
    }
}
