//! Process hardening for commands that hold a recovery private key in memory: lock memory
//! so it is never swapped out, and forbid core dumps so it never lands on disk.

/// What could be hardened; failures are reported, not fatal (an unprivileged user may not
/// be allowed to lock memory).
#[derive(Debug, Default)]
pub struct Hardening {
    /// mlockall(MCL_CURRENT | MCL_FUTURE) succeeded.
    pub memory_locked: bool,
    /// Core dumps are off (RLIMIT_CORE = 0 and not dumpable).
    pub no_core_dumps: bool,
}

/// Locks memory and disables core dumps for the rest of the process.
pub fn harden_process() -> Hardening {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    use nix::sys::resource::{setrlimit, Resource};
    let memory_locked = mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).is_ok();
    let no_core_dumps = setrlimit(Resource::RLIMIT_CORE, 0, 0).is_ok()
        && nix::sys::prctl::set_dumpable(false).is_ok();
    Hardening {
        memory_locked,
        no_core_dumps,
    }
}
