//! The payload of incremental video backups: find the recordings ([`scan`]), compare them
//! with the previous restore point ([`plan`]), store the new ones and the point's
//! [`manifest`] ([`write`]), and restore a point's recordings from the archives holding
//! them ([`extract`]). Pure of keys and targets: the job (`crate::jobs::videos`) brings
//! them.

pub mod extract;
pub mod hash;
pub mod manifest;
pub mod plan;
pub mod scan;
pub mod write;

pub use manifest::{ArchiveRef, Manifest, Record, MANIFEST_ENTRY};
