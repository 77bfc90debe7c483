//! Shares typed by custodians at the terminal: one per line on standard input, echo off
//! when it is a terminal, each custodian prompted in turn.

use std::io::{self, BufRead, IsTerminal};

use crate::jobs::JobError;
use crate::keys::recovery::share::Share;
use crate::keys::KeyError;

/// Reads shares typed by custodians, one per line, from standard input; echo is turned off
/// when it is a terminal. Stops when as many distinct shares as the first share's threshold
/// were given (a share typed twice does not count twice), or at end of input.
pub(super) fn prompt_shares() -> Result<Vec<(String, Share)>, JobError> {
    let stdin = io::stdin();
    let tty = stdin.is_terminal();
    let _echo = if tty { EchoOff::new() } else { None };
    let mut shares: Vec<(String, Share)> = Vec::new();
    let mut lines = stdin.lock();
    let distinct = |shares: &[(String, Share)]| {
        let mut idx: Vec<u8> = shares.iter().map(|(_, s)| s.index).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.len()
    };
    let mut typed = 0;
    loop {
        let needed = shares.first().map(|(_, s)| s.threshold as usize);
        let have = distinct(&shares);
        if needed.is_some_and(|n| have >= n) {
            break;
        }
        typed += 1;
        if tty {
            let of = needed.map(|n| format!(" of {n}")).unwrap_or_default();
            eprint!(
                "custodian {}{of}: type your share code and press Enter (input is hidden): ",
                have + 1
            );
        }
        let mut line = zeroize::Zeroizing::new(String::new());
        let n = lines.read_line(&mut line).map_err(|err| JobError::Io {
            what: "reading a share from standard input".into(),
            err,
        })?;
        if tty {
            eprintln!();
        }
        if n == 0 {
            break;
        }
        if line.trim().is_empty() {
            typed -= 1;
            continue;
        }
        let which = format!("#{typed} (typed)");
        let s = Share::parse(&line, &which).map_err(KeyError::from)?;
        if tty && shares.iter().any(|(_, p)| p.index == s.index) {
            eprintln!("share {} was given already; it counts once", s.index);
        }
        shares.push((which, s));
    }
    Ok(shares)
}

/// Turns terminal echo off for its lifetime.
struct EchoOff {
    saved: nix::sys::termios::Termios,
}

impl EchoOff {
    fn new() -> Option<Self> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut t = saved.clone();
        t.local_flags.remove(LocalFlags::ECHO);
        t.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(&stdin, SetArg::TCSANOW, &t).ok()?;
        Some(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}
