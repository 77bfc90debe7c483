//! Process hardening. Every command that handles a key, a PIN, a password or plaintext turns
//! core dumps off first ([`no_core_dumps`]), so that a crash never writes them to disk.
//! Commands that hold a recovery private key also lock memory ([`harden_process`]), so that
//! it is never swapped out.

/// What could be hardened; failures are reported, not fatal (an unprivileged user may not
/// be allowed to lock memory).
#[derive(Debug, Default)]
pub(crate) struct Hardening {
    /// mlockall(MCL_CURRENT | MCL_FUTURE) succeeded.
    pub memory_locked: bool,
    /// Core dumps are off (RLIMIT_CORE = 0 and not dumpable).
    pub no_core_dumps: bool,
}

/// Turns core dumps off for the rest of the process: RLIMIT_CORE = 0 (soft and hard, so the
/// process cannot raise it again) and not dumpable (no core through a pipe handler either,
/// and no ptrace attach or /proc/PID/mem reads by the same unprivileged user). Cheap: two
/// system calls. Returns whether both succeeded.
pub(crate) fn no_core_dumps() -> bool {
    use nix::sys::resource::{setrlimit, Resource};
    let limit = setrlimit(Resource::RLIMIT_CORE, 0, 0).is_ok();
    let dumpable = nix::sys::prctl::set_dumpable(false).is_ok();
    limit && dumpable
}

/// Locks memory and disables core dumps for the rest of the process.
pub(crate) fn harden_process() -> Hardening {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    let memory_locked = mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).is_ok();
    Hardening {
        memory_locked,
        no_core_dumps: no_core_dumps(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_core_dumps_sets_the_limit_and_the_flag() {
        // This changes the whole test process, which is harmless: it only loses its core
        // dumps. tests/hardening.rs checks the same on the binary, from outside.
        assert!(no_core_dumps());
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
    }
}
