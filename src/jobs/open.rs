//! Opening an archive: read its header, unwrap the data key through the first slot a
//! custodian can open, and check the header MAC.

use std::io::Read;

use crate::format::{ArchiveKind, Header};
use crate::keys::{KeyError, SlotContext, SlotIdentity};
use crate::secret::Dek;
use crate::stream::head::{ArchiveHead, HeadError};
use crate::stream::DecryptReader;

use super::JobError;

/// Reads the header block of an archive (no key needed).
pub(crate) fn read_head<R: Read>(input: &mut R) -> Result<ArchiveHead, JobError> {
    ArchiveHead::read_from(input).map_err(|e| match e {
        HeadError::Format(f) => JobError::Integrity(f),
        HeadError::Io(err) => JobError::io("reading the archive", err),
    })
}

/// Opens an archive with the given custodians, tried in order for every slot. The error of
/// the first custodian that recognised a slot but could not open it is returned when none
/// succeeds, since it is the one that says what to do.
pub fn open<R: Read>(
    input: R,
    custodians: &mut [&mut dyn SlotIdentity],
) -> Result<DecryptReader<R>, JobError> {
    open_by(input, custodians).map(|(r, _)| r)
}

/// Like [`open`], and also says which custodian opened the archive ("pkcs11", "tpm" or
/// "recovery"), so that openings through the recovery slot can be audited.
pub(crate) fn open_by<R: Read>(
    mut input: R,
    custodians: &mut [&mut dyn SlotIdentity],
) -> Result<(DecryptReader<R>, &'static str), JobError> {
    let head = read_head(&mut input)?;
    open_head(head, input, custodians)
}

/// Like [`open_by`], for a header block already read from `input`.
pub(crate) fn open_head<R: Read>(
    head: ArchiveHead,
    input: R,
    custodians: &mut [&mut dyn SlotIdentity],
) -> Result<(DecryptReader<R>, &'static str), JobError> {
    let (dek, opened_by) = unwrap_dek(&head.header, custodians)?;
    Ok((DecryptReader::new(input, head, &dek)?, opened_by))
}

/// The data key of `header`, from the first slot a custodian opens, and that custodian's
/// name. The header MAC is not checked here: a reader made with the key does it.
pub(crate) fn unwrap_dek(
    header: &Header,
    custodians: &mut [&mut dyn SlotIdentity],
) -> Result<(Dek, &'static str), JobError> {
    let ctx = SlotContext::of(header);
    let mut first_err: Option<KeyError> = None;
    for c in custodians.iter_mut() {
        for slot in &header.slots {
            match c.unwrap(slot, &ctx) {
                Ok(Some(k)) => return Ok((k, c.name())),
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    Err(first_err
        .unwrap_or_else(|| KeyError::NoUsableSlot {
            slots: slot_list(header),
            hint: "open it where its HSM or TPM is, or with the recovery shares (--share FILE)",
        })
        .into())
}

/// "pkcs11, recovery": the slot kinds of a header.
pub(crate) fn slot_list(header: &Header) -> String {
    header
        .slots
        .iter()
        .map(|s| s.kind_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a tar-only operation on a secrets archive, with what to do instead.
pub(crate) fn expect_tree(header: &Header, command: &str) -> Result<(), JobError> {
    if header.kind == ArchiveKind::Secrets {
        return Err(JobError::WrongKind(format!(
            "this is a secrets archive (the vault export, not a file tree), so `{command}` cannot restore it to a directory; use `offbox decrypt ARCHIVE --output FILE` or `offbox recover ... --output FILE`"
        )));
    }
    Ok(())
}
