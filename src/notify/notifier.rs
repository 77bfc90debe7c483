//! The [`Notifier`]: the one entry point of callers (`run`, `watch`, `notify test`). It
//! sends an event to every channel that should get it, queues what cannot be delivered, and
//! keeps the lasting conditions (raised, reminded, cleared) in the state directory.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::conditions::{Conditions, Transition};
use super::config::NotifyConfig;
use super::queue::{Queue, QueuedMessage};
use super::{channels, Event, EventKind};

/// What happened to a message on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelStatus {
    /// The channel accepted the message (the SMTP server took it; the syslog collector's
    /// connection took it; UDP: the datagram was sent).
    Delivered,
    /// It could not be delivered now; it is queued in the state directory and retried by
    /// [`Notifier::flush_queue`].
    Queued,
    /// It could not be delivered and is not queued (`notify test`, the local journal, or
    /// the queue itself could not be written: see the error).
    Failed,
}

/// One channel's result for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelResult {
    /// The channel: `journal`, `email`, or `syslog+udp://HOST:PORT` (also `+tcp`, `+tls`).
    pub channel: String,
    /// Delivered, queued or failed.
    pub status: ChannelStatus,
    /// Why it was not delivered, with what to do; `None` when delivered.
    pub error: Option<String>,
}

impl ChannelResult {
    /// Whether the channel delivered.
    pub fn delivered(&self) -> bool {
        self.status == ChannelStatus::Delivered
    }
}

/// The result of sending one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The event id (`target_lost`, ...).
    pub event: &'static str,
    /// Whether this was a reminder of a lasting condition.
    pub reminder: bool,
    /// Per channel, in the order journal, email, syslog channels.
    pub channels: Vec<ChannelResult>,
}

impl Delivery {
    /// Whether every channel delivered.
    pub fn all_delivered(&self) -> bool {
        self.channels.iter().all(ChannelResult::delivered)
    }

    /// How many channels queued the message.
    pub fn queued(&self) -> usize {
        self.channels
            .iter()
            .filter(|c| c.status == ChannelStatus::Queued)
            .count()
    }
}

/// A lasting condition that is currently raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RaisedCondition {
    /// The caller's key (`target:backup:lost`).
    pub key: String,
    /// The event id sent when it was raised.
    pub event: &'static str,
    /// Unix seconds when it was raised.
    pub since: i64,
    /// Unix seconds of the last message about it (the raise or the last reminder).
    pub last_sent: i64,
    /// The raising event's message.
    pub message: String,
}

/// A message waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingMessage {
    /// The channel it waits for.
    pub channel: String,
    /// The event id.
    pub event: &'static str,
    /// Unix seconds of the event.
    pub at: i64,
    /// Unix seconds when it was first queued.
    pub queued_at: i64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last error.
    pub last_error: String,
}

/// What `offbox status` shows about notifications.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Conditions currently raised, oldest first.
    pub conditions: Vec<RaisedCondition>,
    /// Messages waiting in the queue, oldest first.
    pub queued: Vec<PendingMessage>,
}

/// Sends events to the journal, email and syslog channels; see the module doc.
pub struct Notifier {
    cfg: NotifyConfig,
    appliance_id: String,
    state_dir: PathBuf,
    clock: Box<dyn Fn() -> i64 + Send>,
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Notifier {
    /// A notifier for this appliance; its queue and condition state live in `state_dir`
    /// (created when first written). Nothing is connected until an event is sent.
    pub fn new(cfg: &NotifyConfig, appliance_id: &str, state_dir: &Path) -> Notifier {
        Notifier {
            cfg: cfg.clone(),
            appliance_id: appliance_id.to_string(),
            state_dir: state_dir.to_path_buf(),
            clock: Box::new(unix_now),
        }
    }

    /// Replaces the clock (Unix seconds), for tests of reminders.
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: impl Fn() -> i64 + Send + 'static) -> Notifier {
        self.clock = Box::new(clock);
        self
    }

    fn queue(&self) -> Queue {
        Queue::new(&self.state_dir)
    }

    /// One-off event: journal always; email and syslog per config. Never fails: what
    /// cannot be delivered is queued in the state dir.
    pub fn emit(&mut self, event: Event) -> Delivery {
        self.send(event, false)
    }

    fn send(&mut self, event: Event, reminder: bool) -> Delivery {
        let mut results = vec![channels::journal(&event, reminder)];
        let queue = self.queue();
        for ch in channels::remote(&self.cfg, event.kind) {
            let id = ch.id();
            let result = match ch.send(&self.appliance_id, &event, reminder) {
                Ok(()) => ChannelResult {
                    channel: id,
                    status: ChannelStatus::Delivered,
                    error: None,
                },
                Err(err) => {
                    let msg = QueuedMessage::new(&id, &event, reminder, (self.clock)(), &err);
                    match queue.push(&msg) {
                        Ok(()) => {
                            eprintln!("offbox: warning: the {} notification {} was not delivered ({err}); it is queued and retried by the next run or watch", event.kind.id(), id);
                            ChannelResult {
                                channel: id,
                                status: ChannelStatus::Queued,
                                error: Some(err),
                            }
                        }
                        Err(qerr) => {
                            eprintln!("offbox: warning: the {} notification {} was not delivered ({err}) and could not be queued: {qerr}", event.kind.id(), id);
                            ChannelResult {
                                channel: id,
                                status: ChannelStatus::Failed,
                                error: Some(format!("{err}; and it could not be queued: {qerr}")),
                            }
                        }
                    }
                }
            };
            results.push(result);
        }
        Delivery {
            event: event.kind.id(),
            reminder,
            channels: results,
        }
    }

    /// Lasting condition `key` (e.g. "target:backup:lost"): emits `raised` on the
    /// transition into it, a reminder (same event, message says "still") after
    /// `remind_after_hours`, and `cleared` on the transition out. State in the state dir,
    /// written atomically. `None` when nothing was sent.
    pub fn condition(
        &mut self,
        key: &str,
        active: bool,
        raised: Event,
        cleared: Event,
    ) -> Option<Delivery> {
        let now = (self.clock)();
        let remind_secs = (self.cfg.remind_after_hours * 3600.0).round() as i64;
        let mut conds = Conditions::load(&self.state_dir);
        let transition = conds.step(key, active, &raised, now, remind_secs);
        let delivery = match transition {
            Transition::None => return None,
            Transition::Raised => self.send(raised, false),
            Transition::Reminder { since } => {
                let mut ev = raised;
                ev.message = super::format::reminder_message(&ev.message, since);
                self.send(ev, true)
            }
            Transition::Cleared => self.send(cleared, false),
        };
        if let Err(e) = conds.save(&self.state_dir) {
            eprintln!("offbox: warning: the notification state could not be saved ({e}); the next run may repeat the {} event", delivery.event);
        }
        Some(delivery)
    }

    /// Retries queued messages, oldest first; returns how many were delivered. A delivered
    /// message is deleted and its delay logged; a message whose channel is no longer
    /// configured is dropped with a warning. `run` and `watch` call it before they emit, so
    /// that older messages go out first.
    pub fn flush_queue(&mut self) -> usize {
        let queue = self.queue();
        let mut delivered = 0;
        let remotes = channels::all_remote(&self.cfg);
        // A channel that failed once in this pass is not tried again until the next one:
        // its later messages stay queued behind the failed one, in order, and a server that
        // is down costs one timeout per pass, not one per message.
        let mut down: Vec<String> = Vec::new();
        for (path, mut msg) in queue.list() {
            if down.contains(&msg.channel) {
                continue;
            }
            let Some(ch) = remotes.iter().find(|c| c.id() == msg.channel) else {
                eprintln!("offbox: warning: dropping the queued {} notification for {}: that channel is no longer configured", msg.event.kind.id(), msg.channel);
                queue.remove(&path);
                continue;
            };
            match ch.send(&self.appliance_id, &msg.event, msg.reminder) {
                Ok(()) => {
                    queue.remove(&path);
                    delivered += 1;
                    let delay = (self.clock)() - msg.queued_at;
                    eprintln!("offbox: the queued {} notification was delivered to {} after a delay of {delay} s ({} attempts)", msg.event.kind.id(), msg.channel, msg.attempts + 1);
                }
                Err(err) => {
                    down.push(msg.channel.clone());
                    msg.attempts += 1;
                    msg.last_error = err;
                    if let Err(e) = queue.update(&path, &msg) {
                        eprintln!(
                            "offbox: warning: the notification queue could not be updated: {e}"
                        );
                    }
                }
            }
        }
        delivered
    }

    /// `offbox notify test`: one Test event through every channel, with each channel's
    /// result. Nothing is queued.
    pub fn test(&mut self) -> Vec<ChannelResult> {
        let event = Event {
            kind: EventKind::Test,
            at: (self.clock)(),
            backup_kind: None,
            target: None,
            archive: None,
            error_kind: None,
            retry: None,
            message: "test notification from offbox notify test; no action needed".into(),
        };
        let mut results = vec![channels::journal(&event, false)];
        for ch in channels::all_remote(&self.cfg) {
            let r = ch.send(&self.appliance_id, &event, false);
            results.push(ChannelResult {
                channel: ch.id(),
                status: if r.is_ok() {
                    ChannelStatus::Delivered
                } else {
                    ChannelStatus::Failed
                },
                error: r.err(),
            });
        }
        results
    }

    /// Conditions currently raised and messages queued (for `offbox status`).
    pub fn pending(&self) -> Pending {
        Pending {
            conditions: Conditions::load(&self.state_dir).raised(),
            queued: self
                .queue()
                .list()
                .into_iter()
                .map(|(_, m)| m.pending())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    fn ev(kind: EventKind, message: &str) -> Event {
        Event {
            kind,
            at: 0,
            backup_kind: None,
            target: Some("dr-site".into()),
            archive: None,
            error_kind: None,
            retry: None,
            message: message.into(),
        }
    }

    #[test]
    fn condition_with_an_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(1000));
        let clock = now.clone();
        let cfg = NotifyConfig {
            remind_after_hours: 1.0,
            ..NotifyConfig::default()
        };
        let mut n =
            Notifier::new(&cfg, "a", dir.path()).with_clock(move || clock.load(Ordering::SeqCst));
        let mut step = |t: i64, active: bool| {
            now.store(t, Ordering::SeqCst);
            n.condition(
                "k",
                active,
                ev(EventKind::CapacityLow, "low"),
                ev(EventKind::CapacityOk, "ok"),
            )
        };
        let d = step(1000, true).expect("raised");
        assert_eq!((d.event, d.reminder), ("capacity_low", false));
        assert_eq!(d.channels.len(), 1, "journal only");
        assert!(d.all_delivered());
        assert!(step(1001, true).is_none());
        assert!(step(4599, true).is_none());
        let d = step(4600, true).expect("reminder after one hour");
        assert!(d.reminder);
        assert!(step(4601, true).is_none());
        let d = step(5000, false).expect("cleared");
        assert_eq!((d.event, d.reminder), ("capacity_ok", false));
        assert!(step(5001, false).is_none());
    }

    #[test]
    fn pending_lists_raised_conditions() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = Notifier::new(&NotifyConfig::default(), "a", dir.path()).with_clock(|| 42);
        assert_eq!(n.pending(), Pending::default());
        n.condition(
            "target:x:lost",
            true,
            ev(EventKind::TargetLost, "lost"),
            ev(EventKind::TargetRecovered, "back"),
        );
        let p = n.pending();
        assert_eq!(p.conditions.len(), 1);
        assert_eq!(p.conditions[0].since, 42);
        assert_eq!(p.conditions[0].message, "lost");
        assert!(p.queued.is_empty());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["conditions"][0]["event"], "target_lost");
    }

    #[test]
    fn success_is_not_emailed_by_default() {
        let text = "[email]\nserver = \"s\"\ntls = \"tls\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n[[syslog]]\ntransport = \"udp\"\naddress = \"h\"\n";
        let mut cfg: NotifyConfig = toml::from_str(text).unwrap();
        let ids = |cfg: &NotifyConfig, k| {
            channels::remote(cfg, k)
                .iter()
                .map(|c| c.id())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&cfg, EventKind::BackupSucceeded),
            vec!["syslog+udp://h:514"]
        );
        assert_eq!(
            ids(&cfg, EventKind::BackupFailed),
            vec!["email", "syslog+udp://h:514"]
        );
        cfg.success_to_email = true;
        assert_eq!(ids(&cfg, EventKind::BackupSucceeded).len(), 2);
    }

    #[test]
    fn undeliverable_messages_are_queued_and_a_down_channel_is_tried_once_per_flush() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on port 1 of loopback: connection refused at once.
        let text = "[[syslog]]\ntransport = \"tcp\"\naddress = \"127.0.0.1\"\nport = 1\ntimeout_secs = 2\n";
        let cfg: NotifyConfig = toml::from_str(text).unwrap();
        let mut n = Notifier::new(&cfg, "a", dir.path());
        for m in ["first", "second"] {
            let d = n.emit(ev(EventKind::BackupFailed, m));
            assert_eq!(d.queued(), 1, "{d:?}");
            let ch = &d.channels[1];
            assert_eq!(ch.channel, "syslog+tcp://127.0.0.1:1");
            assert!(
                ch.error
                    .as_deref()
                    .unwrap()
                    .contains("cannot connect to 127.0.0.1:1"),
                "{ch:?}"
            );
        }
        assert_eq!(n.flush_queue(), 0);
        let q = n.pending().queued;
        let attempts: Vec<u32> = q.iter().map(|m| m.attempts).collect();
        assert_eq!(attempts, vec![2, 1], "the second waits behind the first");
        // The channel removed from the config: its messages are dropped.
        let mut n = Notifier::new(&NotifyConfig::default(), "a", dir.path());
        assert_eq!(n.flush_queue(), 0);
        assert!(n.pending().queued.is_empty());
    }
}
