//! The checks of the appliance's own setup: the config is complete (`config`), the state
//! directory takes writes (`state_dir`), and the recording directories can be read
//! (`videos.sources`, when the video backup is on).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::super::due::scheduled;
use super::super::state::StateFile;
use super::super::JobError;
use super::Check;
use crate::config::Config;

/// `config`: it parsed (the caller read it), it names at least one target, and each
/// scheduled kind has something to back up.
pub(super) fn config(cfg: &Config, path: &Path) -> Check {
    const NAME: &str = "config";
    let file = path.display();
    if cfg.targets.named.is_empty() {
        return Check::fail(
            NAME,
            "config",
            1,
            format!("the config {file} names no off-box target, so offbox cannot back up anywhere"),
            "add a [targets.NAME] table (docs/targets.md), then run `offbox target check NAME`",
        );
    }
    let kinds = scheduled(cfg);
    for s in &kinds {
        let empty = match s.run_kind.name {
            "system" => cfg
                .backup
                .sources
                .is_empty()
                .then_some("backup.sources is empty"),
            "secrets" => (cfg.secrets.export_command.is_empty() && cfg.secrets.file.is_none())
                .then_some("[secrets] has neither export_command nor file"),
            _ => None,
        };
        if let Some(why) = empty {
            return Check::fail(
                NAME,
                "config",
                1,
                format!(
                    "the config {file} schedules the {} backup, but {why}, so every run of it fails",
                    s.run_kind.name
                ),
                "set what the kind backs up (docs/operator-guide.md, section 2), or set enabled = false in its [schedule.KIND] table",
            );
        }
    }
    let targets: Vec<&str> = cfg.targets.named.keys().map(String::as_str).collect();
    let described: Vec<String> = kinds
        .iter()
        .map(|s| {
            format!(
                "{} every {} h to {}",
                s.run_kind.name,
                s.sched.every_hours,
                s.targets.join(",")
            )
        })
        .collect();
    if kinds.is_empty() {
        return Check::warn(
            NAME,
            "config",
            format!(
                "the config {file} schedules no backup: `offbox run` (the hourly timer) backs up nothing"
            ),
            "add [schedule.secrets] and [schedule.system] tables (docs/operator-guide.md, section 9)",
        );
    }
    Check::ok(
        NAME,
        format!(
            "{file}: keys on {}, targets {}, schedule: {}",
            cfg.keys.backend.name(),
            targets.join(", "),
            described.join("; ")
        ),
    )
}

/// `state_dir`: the service state directory exists and takes a file (written, synced and
/// removed), and the state file in it parses. A missing directory that can be created is a
/// warning (the first `run` creates it); one that cannot is a failure: `run` cannot take
/// its lock there.
pub(super) fn state_dir(cfg: &Config) -> Check {
    const NAME: &str = "state_dir";
    let dir = cfg.state_dir();
    let shown = dir.display();
    let hint_dir = "set [service] state_dir (or OFFBOX_STATE_DIR) to a directory the service user may write; under systemd, StateDirectory=offbox creates /var/lib/offbox";
    match fs::metadata(&dir) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return match creatable(&dir) {
                Ok(()) => Check::warn(
                    NAME,
                    "io",
                    format!("the state directory {shown} does not exist; the first `offbox run` creates it, but until then there is no record of earlier backups, conditions or queued notifications"),
                    format!("check that {shown} is the directory the service uses; {hint_dir}"),
                ),
                Err(why) => Check::failed(
                    NAME,
                    &JobError::Io {
                        what: format!("creating the state directory {shown}"),
                        err: io::Error::other(format!("{why}; offbox cannot take its run lock, so `offbox run` cannot back up; {hint_dir}")),
                    },
                ),
            };
        }
        Err(err) => {
            return Check::failed(
                NAME,
                &JobError::Io {
                    what: format!("reading the state directory {shown}"),
                    err,
                },
            )
        }
        Ok(m) if !m.is_dir() => {
            return Check::failed(
                NAME,
                &JobError::Io {
                    what: format!("using the state directory {shown}"),
                    err: io::Error::other(format!("it is not a directory; {hint_dir}")),
                },
            )
        }
        Ok(_) => {}
    }
    if let Err(err) = write_probe(&dir) {
        return Check::failed(
            NAME,
            &JobError::Io {
                what: format!("writing a file in the state directory {shown}"),
                err: io::Error::new(err.kind(), format!("{err}; {hint_dir}")),
            },
        );
    }
    let notes = StateFile::new(&dir).read().notes;
    if !notes.is_empty() {
        return Check::warn(
            NAME,
            "io",
            notes.join("; "),
            "nothing to do if the message says the state is replaced; otherwise fix the state file's owner and mode",
        );
    }
    Check::ok(NAME, format!("{shown} is writable"))
}

/// Whether `dir` could be created: its nearest existing ancestor is a directory.
fn creatable(dir: &Path) -> Result<(), String> {
    let mut cur = dir.parent();
    while let Some(p) = cur {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                return nix::unistd::access(p, nix::unistd::AccessFlags::W_OK)
                    .map_err(|e| format!("{} is not writable ({e})", p.display()));
            }
            Ok(_) => return Err(format!("{} is not a directory", p.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => cur = p.parent(),
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
    Err("no parent directory exists".into())
}

/// Writes, syncs and removes a small private file in `dir`.
fn write_probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(format!(".selfcheck.{}", std::process::id()));
    let _ = fs::remove_file(&path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .and_then(|mut f| {
            f.write_all(b"offbox selfcheck\n")
                .and_then(|()| f.sync_all())
        });
    let removed = fs::remove_file(&path);
    written?;
    removed
}

/// `videos.sources`: with the video backup switched on, every recording directory can be
/// listed; otherwise every video run fails (none: the check is left out).
pub(super) fn videos(cfg: &Config) -> Option<Check> {
    const NAME: &str = "videos.sources";
    let v = &cfg.videos;
    if !v.enabled {
        return None;
    }
    for src in &v.sources {
        if let Err(e) = fs::read_dir(src) {
            return Some(Check::fail(
                NAME,
                "config",
                1,
                format!(
                    "the recording directory {} cannot be listed ({e}), so every video run fails",
                    src.display()
                ),
                "fix [videos] sources in the config, or give the service user read access to the directory",
            ));
        }
    }
    Some(Check::ok(
        NAME,
        format!("{} recording directory(ies) readable", v.sources.len()),
    ))
}
