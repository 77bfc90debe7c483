//! The secrets payload: the vault's export, from the export command or a file.
//!
//! An export that yields nothing is an error, found before any key is used or any archive
//! byte is written: an empty archive would look like a good backup of nothing. The first
//! bytes are read here, at once, for that reason; the rest is streamed.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use zeroize::Zeroizing;

use super::JobError;
use crate::config::SecretsConfig;

/// How many bytes are read ahead to check that the export is not empty.
const FIRST_READ: usize = 64 * 1024;

/// Opens the secrets payload: `--source FILE` (at most one), else the export command, else
/// the configured file. Fails when the source cannot be opened, or yields zero bytes.
pub fn open(cfg: &SecretsConfig, sources: &[PathBuf]) -> Result<Box<dyn Read>, JobError> {
    let file = match sources {
        [one] => Some(one.clone()),
        [] => None,
        _ => {
            return Err(JobError::Export(
                "a secrets backup takes one --source FILE (or the export command); check the command line".into(),
            ))
        }
    };
    if file.is_none() && !cfg.export_command.is_empty() {
        return open_command(&cfg.export_command);
    }
    let Some(path) = file.or_else(|| cfg.file.clone()) else {
        return Err(JobError::Export(
            "no source: set secrets.export_command or secrets.file in the config, or pass --source FILE".into(),
        ));
    };
    open_file(&path)
}

fn open_command(argv: &[String]) -> Result<Box<dyn Read>, JobError> {
    let name = &argv[0];
    let mut child = Command::new(name)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            JobError::Export(format!(
                "cannot start {name}: {e}; check secrets.export_command in the config"
            ))
        })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = ExportReader {
        child,
        stdout,
        name: name.clone(),
    };
    // A failure before the first byte is reported by the reader itself (exit status).
    let first = first_bytes(&mut reader).map_err(|e| {
        JobError::Export(format!("{e}; check secrets.export_command in the config"))
    })?;
    if first.is_empty() {
        return Err(JobError::Export(format!(
            "the export command {name} succeeded but wrote nothing (0 bytes), and an empty export is not a backup; no archive was written. Run secrets.export_command by hand as the service user and check that it prints the vault export on its standard output"
        )));
    }
    Ok(Box::new(Cursor::new(first).chain(reader)))
}

fn open_file(path: &Path) -> Result<Box<dyn Read>, JobError> {
    let what = || {
        format!(
            "{} (secrets.file in the config, or --source)",
            path.display()
        )
    };
    let mut f =
        File::open(path).map_err(|e| JobError::Export(format!("cannot open {}: {e}", what())))?;
    let first = first_bytes(&mut f)
        .map_err(|e| JobError::Export(format!("cannot read {}: {e}", what())))?;
    if first.is_empty() {
        return Err(JobError::Export(format!(
            "{} is empty (0 bytes), and an empty export is not a backup; no archive was written. Check that the vault export was written there completely",
            what()
        )));
    }
    Ok(Box::new(Cursor::new(first).chain(f)))
}

/// Reads until at least one byte (up to [`FIRST_READ`]) or the end of the stream. The
/// buffer is zeroized when dropped: it holds plaintext secrets.
fn first_bytes(r: &mut dyn Read) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; FIRST_READ]);
    loop {
        match r.read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Streams an export command's output, and turns its failure into a read error so that the
/// archive is never finished over a failed export.
struct ExportReader {
    child: Child,
    stdout: ChildStdout,
    name: String,
}

impl Read for ExportReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let status = self.child.wait()?;
            if !status.success() {
                return Err(io::Error::other(format!(
                    "the export command {} failed ({status}); the archive was not finished",
                    self.name
                )));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(argv: &[&str]) -> SecretsConfig {
        SecretsConfig {
            export_command: argv.iter().map(|s| s.to_string()).collect(),
            file: None,
        }
    }

    fn read_all(mut r: Box<dyn Read>) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn command_output_is_streamed_whole() {
        let r = open(
            &cfg(&["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"]),
            &[],
        )
        .unwrap();
        let v = read_all(r).unwrap();
        assert_eq!(v.len(), 200_000);
        assert!(v.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn silent_command_is_an_error() {
        let e = open(&cfg(&["true"]), &[]).err().unwrap();
        let m = e.to_string();
        assert!(
            m.contains("the export command true succeeded but wrote nothing (0 bytes)"),
            "{m}"
        );
        assert!(m.contains("no archive was written"), "{m}");
    }

    #[test]
    fn failing_silent_command_reports_its_status() {
        let e = open(&cfg(&["sh", "-c", "exit 3"]), &[]).err().unwrap();
        assert!(
            e.to_string()
                .contains("the export command sh failed (exit status: 3)"),
            "{e}"
        );
    }

    #[test]
    fn failure_after_output_is_a_read_error() {
        let r = open(&cfg(&["sh", "-c", "echo part; exit 7"]), &[]).unwrap();
        let e = read_all(r).unwrap_err();
        assert!(e.to_string().contains("failed (exit status: 7)"), "{e}");
    }

    #[test]
    fn empty_file_is_an_error_and_a_full_one_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("export.json");
        std::fs::write(&p, b"").unwrap();
        let e = open(&SecretsConfig::default(), std::slice::from_ref(&p))
            .err()
            .unwrap();
        assert!(
            e.to_string().contains(&format!(
                "{} (secrets.file in the config, or --source) is empty (0 bytes)",
                p.display()
            )),
            "{e}"
        );
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let r = open(
            &SecretsConfig {
                export_command: Vec::new(),
                file: Some(p),
            },
            &[],
        )
        .unwrap();
        assert_eq!(read_all(r).unwrap(), data);
    }
}
