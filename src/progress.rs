//! Progress of long runs: shared byte counters, and a progress bar that shows them on a
//! terminal (indicatif).
//!
//! The bar is drawn only when stderr is a TTY, so logs, pipes and the service stay quiet.
//! Where the total is known ([`Total`]: the sources are walked first, in the bar's own
//! thread so the backup does not wait, or a file's size), it shows a percentage and an ETA;
//! otherwise a spinner with the bytes so far. Dropping the [`Ticker`] clears the bar and
//! waits for its thread, so no frame is ever drawn after the summary that follows.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// Bytes read from the sources and bytes written to the archive so far.
#[derive(Debug, Default)]
pub struct Meter {
    /// Plaintext bytes read.
    pub bytes_in: AtomicU64,
    /// Archive bytes written (or read, for restores).
    pub bytes_out: AtomicU64,
    /// Files handled.
    pub files: AtomicU64,
}

impl Meter {
    /// Adds to the plaintext counter.
    pub(crate) fn add_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds to the archive counter.
    pub(crate) fn add_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }
}

/// A reader that adds what it reads to a meter's plaintext counter as it goes.
pub(crate) struct Metered<'a, R> {
    inner: R,
    meter: &'a Meter,
}

impl<'a, R> Metered<'a, R> {
    /// Counts what `inner` yields into `meter`.
    pub(crate) fn new(inner: R, meter: &'a Meter) -> Self {
        Metered { inner, meter }
    }
}

impl<R: std::io::Read> std::io::Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add_in(n as u64);
        Ok(n)
    }
}

impl Total {
    /// The size of the archive file `archive` when it is a local file; [`Total::Unknown`]
    /// for standard input (`-`), a pipe or an archive on a target.
    pub(crate) fn of_archive(archive: &Path, on_target: bool) -> Total {
        match std::fs::metadata(archive) {
            Ok(m) if !on_target && archive != Path::new("-") && m.is_file() => {
                Total::Bytes(m.len())
            }
            _ => Total::Unknown,
        }
    }
}

/// Whether the walk of [`Total::Walk`] leaves a path out (the backup's excludes).
pub type Skip = Box<dyn Fn(&Path) -> bool + Send>;

/// What the total of a run's counted bytes will be: the plaintext of a backup, or the
/// archive bytes of a read (`restore`, `verify`, `decrypt`, `recover`).
pub enum Total {
    /// Not known (a stream, an archive on a target): a spinner.
    Unknown,
    /// Known in advance (a file's size).
    Bytes(u64),
    /// The data bytes under these paths but those `Skip` leaves out ([`data_bytes`]),
    /// found by a walk in the bar's thread; a spinner until it is done.
    Walk(Vec<PathBuf>, Skip),
}

/// A background thread that draws the progress bar on a TTY.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts drawing `label` and the meter, if stderr is a terminal.
    pub fn start(label: &'static str, meter: Arc<Meter>, total: Total) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = std::io::stderr().is_terminal().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || draw(label, &meter, total, &stop))
        });
        Ticker { stop, handle }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// The bar's thread: redraws every [`TICK`] until `stop`, then clears the line.
fn draw(label: &'static str, meter: &Meter, total: Total, stop: &AtomicBool) {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(spinner_style());
    pb.set_prefix(label);
    let mut pending = match total {
        Total::Unknown => None,
        Total::Bytes(n) => Some(n),
        Total::Walk(paths, skip) => {
            pb.set_message("counting the sources");
            pb.tick();
            Some(paths.iter().map(|p| data_bytes(p, &skip, stop)).sum())
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let done = meter.bytes_in.load(Ordering::Relaxed);
        if let Some(n) = pending.take() {
            pb.set_style(bar_style());
            pb.set_length(n.max(done));
        }
        if pb.length().is_some_and(|len| done > len) {
            // The sources grew while they were read.
            pb.set_length(done);
        }
        pb.set_position(done);
        // Restores count only what they read: no "out" figure for them.
        let out = meter.bytes_out.load(Ordering::Relaxed);
        if out > 0 {
            pb.set_message(format!("({} out)", human_bytes(out)));
        }
        std::thread::park_timeout(TICK);
    }
    pb.finish_and_clear();
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {binary_bytes} {binary_bytes_per_sec} {msg}")
        .expect("a valid template")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} {percent:>3}% [{bar:20}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("a valid template")
    .progress_chars("=> ")
}

/// The data bytes a backup reads under `path`: for each regular file its size, or its
/// allocated bytes when smaller (a sparse file's holes are not read). Paths `skip` leaves
/// out are not entered, symlinks are not followed, unreadable entries count as nothing.
/// Stops early when `stop` is set.
pub(crate) fn data_bytes(path: &Path, skip: &dyn Fn(&Path) -> bool, stop: &AtomicBool) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if skip(&p) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_file() {
            total += md.len().min(md.blocks() * 512);
        } else if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// "1.50 GiB", "312 B": binary units, two decimals above KiB.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
    }

    #[test]
    fn data_bytes_counts_files_once_and_skips_holes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::write(d.path().join("sub/b"), vec![2u8; 5_000]).unwrap();
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("link")).unwrap();
        // 64 MiB of hole with one written 4 KiB block: counted as its allocation.
        let f = std::fs::File::create(d.path().join("sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[3u8; 4096], 0).unwrap();
        drop(f);
        let stop = AtomicBool::new(false);
        let none = |_: &Path| false;
        let n = data_bytes(d.path(), &none, &stop);
        assert!((15_000 + 4096..15_000 + (1 << 20)).contains(&n), "{n}");
        assert_eq!(data_bytes(&d.path().join("a"), &none, &stop), 10_000);
        assert_eq!(data_bytes(&d.path().join("missing"), &none, &stop), 0);
        let no_sub = |p: &Path| p.ends_with("sub");
        assert_eq!(data_bytes(d.path(), &no_sub, &stop), n - 5_000, "excluded");
        stop.store(true, Ordering::Relaxed);
        assert_eq!(data_bytes(d.path(), &none, &stop), 0, "stops when asked");
    }
}
