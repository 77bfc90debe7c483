//! The channels: the local journal (always), and the remote ones the config names (email,
//! each syslog collector), with a stable id each, used in results and in the queue.

use std::os::unix::net::UnixDatagram;

use super::config::{EmailConfig, NotifyConfig, SyslogConfig};
use super::notifier::{ChannelResult, ChannelStatus};
use super::{email, format, syslog, Event, EventKind};

/// The local syslog socket.
pub(crate) const DEV_LOG: &str = "/dev/log";

/// A remote channel.
pub(crate) enum Channel<'a> {
    /// `[notify.email]`.
    Email(&'a EmailConfig),
    /// One `[[notify.syslog]]`.
    Syslog(&'a SyslogConfig),
}

impl Channel<'_> {
    /// `email`, or `syslog+tcp://HOST:PORT`.
    pub fn id(&self) -> String {
        match self {
            Channel::Email(_) => "email".into(),
            Channel::Syslog(s) => s.id(),
        }
    }

    /// Sends one event; the error says what failed and what to check.
    pub fn send(&self, appliance: &str, event: &Event, reminder: bool) -> Result<(), String> {
        match self {
            Channel::Email(e) => email::send(e, appliance, event, reminder),
            Channel::Syslog(s) => syslog::send(s, appliance, event),
        }
    }
}

/// Every configured remote channel.
pub(crate) fn all_remote(cfg: &NotifyConfig) -> Vec<Channel<'_>> {
    let mut v: Vec<Channel<'_>> = cfg.email.iter().map(Channel::Email).collect();
    v.extend(cfg.syslog.iter().map(Channel::Syslog));
    v
}

/// The remote channels that get events of `kind`: all of them, except that
/// `backup_succeeded` is emailed only with `success_to_email`.
pub fn remote(cfg: &NotifyConfig, kind: EventKind) -> Vec<Channel<'_>> {
    all_remote(cfg)
        .into_iter()
        .filter(|c| {
            !(matches!(c, Channel::Email(_))
                && kind == EventKind::BackupSucceeded
                && !cfg.success_to_email)
        })
        .collect()
}

/// The local journal: the event as one BSD syslog line to /dev/log (journald or the local
/// syslog daemon listen there); where there is no /dev/log, on standard error (which a
/// systemd unit also sends to the journal).
pub fn journal(event: &Event, reminder: bool) -> ChannelResult {
    let mut line = format::journal_line(event);
    if reminder {
        line.push_str(" reminder=true");
    }
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to(line.as_bytes(), DEV_LOG));
    let channel = match sent {
        Ok(_) => "journal".to_string(),
        Err(_) => {
            // Without the "<PRI>" prefix, which only syslog reads.
            let text = line.split_once('>').map_or(line.as_str(), |(_, t)| t);
            eprintln!("{text}");
            "journal (stderr)".to_string()
        }
    };
    ChannelResult {
        channel,
        status: ChannelStatus::Delivered,
        error: None,
    }
}
