//! Jobs: the operations an operator runs, built from the layers below (format, stream,
//! keys, payload). Each job takes already-opened custodians and streams; the CLI wires them
//! to files, the config and the terminal.

pub mod backup;
pub mod capacity;
pub mod due;
pub mod error;
pub mod error_kind;
pub mod export;
pub mod lock;
pub mod notices;
pub mod open;
pub mod publish;
pub mod read;
pub mod recovery;
pub mod restore;
pub mod retire;
pub mod run;
pub mod selfcheck;
pub mod signature;
pub(crate) mod sink;
pub(crate) mod ssh_keys;
pub mod state;
pub mod status;
pub mod target;
pub mod videos;
pub mod watch;

pub use error::JobError;
