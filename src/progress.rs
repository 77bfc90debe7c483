//! Progress of long runs: shared byte counters, and a ticker that shows them on a terminal.
//!
//! The ticker draws only when stderr is a TTY, so logs and pipes stay quiet.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A background thread that redraws one status line every half second on a TTY.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts drawing `label` and the meter, if stderr is a terminal.
    pub fn start(label: &'static str, meter: Arc<Meter>) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = std::io::stderr().is_terminal().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let i = meter.bytes_in.load(Ordering::Relaxed);
                    let o = meter.bytes_out.load(Ordering::Relaxed);
                    let f = meter.files.load(Ordering::Relaxed);
                    let rate = i as f64 / t0.elapsed().as_secs_f64().max(0.001);
                    let _ = write!(
                        std::io::stderr(),
                        "\r\x1b[K{label}: {f} files, {} in, {} out, {}/s",
                        human_bytes(i),
                        human_bytes(o),
                        human_bytes(rate as u64)
                    );
                }
                let _ = write!(std::io::stderr(), "\r\x1b[K");
            })
        });
        Ticker { stop, handle }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
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
    #[test]
    fn human_units() {
        assert_eq!(super::human_bytes(0), "0 B");
        assert_eq!(super::human_bytes(1536), "1.50 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.00 GiB");
    }
}
