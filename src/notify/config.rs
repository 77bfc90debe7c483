//! The `[notify]` section of the config: when to remind, and the channels (one
//! `[notify.email]`, any number of `[[notify.syslog]]`). The local journal needs no config.
//!
//! ```toml
//! [notify]
//! remind_after_hours = 24        # a lasting condition is repeated this often (0: never)
//! success_to_email = false       # backup_succeeded goes to syslog and the journal only
//!
//! [notify.email]
//! server = "smtp.example.net"
//! port = 587
//! tls = "starttls"               # or "tls" (implicit TLS, usually port 465)
//! ca_file = "/etc/offbox/smtp-ca.pem"   # optional; default: the system's roots
//! username = "offbox"
//! password_file = "/etc/offbox/smtp.password"
//! from = "offbox@appliance.example.net"
//! to = ["pam-ops@example.net"]
//!
//! [[notify.syslog]]
//! transport = "tls"              # "udp", "tcp" (RFC 6587 octet counting), "tls" (RFC 5425)
//! address = "siem.example.net"
//! port = 6514
//! ca_file = "/etc/offbox/siem-ca.pem"
//! facility = "daemon"
//! format = "rfc5424"             # or "cef"
//! ```
//!
//! Secrets are never in the config: it names the file or environment variable that holds
//! the SMTP password, read by the one secret reader ([`crate::secret::source`]).
//! This module does not use `crate::config`; `config` calls [`NotifyConfig::validate`].

use std::path::PathBuf;

use serde::Deserialize;

use crate::secret::source::{read_secret_text, SecretSource};
use crate::secret::SecretText;

pub use super::validate::InvalidValue;

/// Default for `notify.remind_after_hours`.
pub(crate) const DEFAULT_REMIND_AFTER_HOURS: f64 = 24.0;
/// Default for `notify.email.timeout_secs` and the syslog connections.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// The longest `timeout_secs` accepted.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 600;

/// `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Hours after which a lasting condition is sent again ("still ..."); fractions allowed;
    /// 0 turns reminders off.
    #[serde(default = "default_remind")]
    pub remind_after_hours: f64,
    /// Whether `backup_succeeded` is also emailed (it always goes to syslog and the journal).
    #[serde(default)]
    pub success_to_email: bool,
    /// `[notify.email]`.
    pub email: Option<EmailConfig>,
    /// `[[notify.syslog]]`.
    #[serde(default)]
    pub syslog: Vec<SyslogConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            remind_after_hours: DEFAULT_REMIND_AFTER_HOURS,
            success_to_email: false,
            email: None,
            syslog: Vec::new(),
        }
    }
}

fn default_remind() -> f64 {
    DEFAULT_REMIND_AFTER_HOURS
}

/// How the SMTP connection is protected. There is no plaintext option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, not opportunistic); usually port 587.
    Starttls,
    /// TLS from the first byte; usually port 465.
    Tls,
}

/// `[notify.email]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name (checked against its certificate).
    pub server: String,
    /// SMTP port [default: 587 for starttls, 465 for tls].
    pub port: Option<u16>,
    /// `starttls` or `tls`.
    pub tls: SmtpTls,
    /// PEM file of the CA(s) that sign the server's certificate [default: system roots].
    pub ca_file: Option<PathBuf>,
    /// SMTP AUTH user; without it, no AUTH.
    pub username: Option<String>,
    /// File holding the SMTP password.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the SMTP password.
    pub password_env: Option<String>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Connection and command timeout in seconds [default: 30].
    pub timeout_secs: Option<u64>,
}

impl EmailConfig {
    /// The port: configured, else 587 (STARTTLS) or 465 (TLS).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }

    /// The timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
    }

    /// The SMTP password, when a username is set (from the file, else the variable), read by
    /// the one secret reader. `Ok(None)` means no AUTH.
    pub fn password(&self) -> Result<Option<SecretText>, String> {
        if self.username.is_none() {
            return Ok(None);
        }
        let source = match (&self.password_file, &self.password_env) {
            (Some(p), _) => SecretSource::File(p.clone()),
            (None, Some(v)) => SecretSource::Env(v.clone()),
            (None, None) => {
                return Err("notify.email.username is set but there is no password: set notify.email.password_file (or password_env)".into())
            }
        };
        read_secret_text(&source, "SMTP password", "password_file")
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// A syslog transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    /// UDP datagrams (RFC 5426), one message each; no delivery guarantee.
    Udp,
    /// TCP with RFC 6587 octet counting.
    Tcp,
    /// TLS (RFC 5425), octet counting, server certificate verified.
    Tls,
}

/// The message format on a syslog channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// RFC 5424 with `[offbox@32473 ...]` structured data.
    #[default]
    Rfc5424,
    /// ArcSight CEF as the MSG of an RFC 5424 message.
    Cef,
}

/// `[[notify.syslog]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `udp`, `tcp` or `tls`.
    pub transport: SyslogTransport,
    /// Host name or IP address of the collector.
    pub address: String,
    /// Port [default: 514 for udp and tcp, 6514 for tls].
    pub port: Option<u16>,
    /// PEM file of the CA(s) of the collector (tls) [default: system roots].
    pub ca_file: Option<PathBuf>,
    /// Facility name (`daemon`, `authpriv`, `local0` ... `local7`, ...) [default: daemon].
    #[serde(default = "default_facility")]
    pub facility: String,
    /// `rfc5424` or `cef` [default: rfc5424].
    #[serde(default)]
    pub format: SyslogFormat,
    /// Connection timeout in seconds [default: 30].
    pub timeout_secs: Option<u64>,
}

fn default_facility() -> String {
    "daemon".into()
}

impl SyslogConfig {
    /// The port: configured, else 514 (udp, tcp) or 6514 (tls).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            SyslogTransport::Udp | SyslogTransport::Tcp => 514,
            SyslogTransport::Tls => 6514,
        })
    }

    /// The timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
    }

    /// The facility's code (validated at parse time; `daemon` if unknown).
    pub(crate) fn facility_code(&self) -> u8 {
        facility_code(&self.facility).unwrap_or(3)
    }

    /// A stable, readable id of this channel: `syslog+tls://siem.example.net:6514`.
    pub fn id(&self) -> String {
        let t = match self.transport {
            SyslogTransport::Udp => "udp",
            SyslogTransport::Tcp => "tcp",
            SyslogTransport::Tls => "tls",
        };
        format!("syslog+{t}://{}:{}", self.address, self.port())
    }
}

/// The syslog facility names and codes (RFC 5424 table 1, with the usual names).
pub(crate) const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The code of a facility name.
pub(crate) fn facility_code(name: &str) -> Option<u8> {
    FACILITIES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        notify: NotifyConfig,
    }

    fn parse(text: &str) -> Result<NotifyConfig, String> {
        let d: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        d.notify
            .validate()
            .map_err(|e| format!("{} = {}: {}", e.key, e.value, e.allowed))?;
        Ok(d.notify)
    }

    const EMAIL: &str = "[notify.email]\nserver = \"smtp.example.net\"\ntls = \"starttls\"\nfrom = \"offbox@a.example\"\nto = [\"ops@example.net\"]\n";

    #[test]
    fn defaults() {
        let c = parse("[notify]\n").unwrap();
        assert_eq!(c.remind_after_hours, 24.0);
        assert!(!c.success_to_email && c.email.is_none() && c.syslog.is_empty());
        let c = parse(&format!(
            "[notify]\n{EMAIL}[[notify.syslog]]\ntransport = \"tls\"\naddress = \"siem\"\n"
        ))
        .unwrap();
        let e = c.email.unwrap();
        assert_eq!((e.port(), e.timeout().as_secs()), (587, 30));
        assert_eq!(c.syslog[0].port(), 6514);
        assert_eq!(c.syslog[0].facility_code(), 3);
        assert_eq!(c.syslog[0].format, SyslogFormat::Rfc5424);
        assert_eq!(c.syslog[0].id(), "syslog+tls://siem:6514");
    }

    #[test]
    fn fractional_reminders_and_ranges() {
        assert_eq!(
            parse("[notify]\nremind_after_hours = 0.5")
                .unwrap()
                .remind_after_hours,
            0.5
        );
        let e = parse("[notify]\nremind_after_hours = -1").unwrap_err();
        assert!(e.starts_with("notify.remind_after_hours = -1: "), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[notify]\nremind_afterhours = 1").unwrap_err();
        assert!(e.contains("unknown field `remind_afterhours`"), "{e}");
        let e = parse(&EMAIL.replace("starttls", "none")).unwrap_err();
        assert!(
            e.contains("unknown variant `none`, expected `starttls` or `tls`"),
            "{e}"
        );
        let e = parse(&EMAIL.replace("ops@example.net", "not an address")).unwrap_err();
        assert!(
            e.starts_with("notify.email.to = \"not an address\": "),
            "{e}"
        );
        let e = parse(&EMAIL.replace("to = [\"ops@example.net\"]", "to = []")).unwrap_err();
        assert!(e.starts_with("notify.email.to = []"), "{e}");
        let e = parse(&format!("{EMAIL}username = \"u\"\n")).unwrap_err();
        assert!(e.starts_with("notify.email.username = "), "{e}");
        assert!(e.contains("password_file"), "{e}");
        let e = parse(&format!("{EMAIL}timeout_secs = 0\n")).unwrap_err();
        assert!(e.starts_with("notify.email.timeout_secs = 0"), "{e}");
        let sl = "[[notify.syslog]]\ntransport = \"udp\"\naddress = \"siem\"\n";
        let e = parse(&format!("{sl}facility = \"local9\"\n")).unwrap_err();
        assert!(
            e.starts_with("notify.syslog.facility = \"local9\": it must be one of kern, "),
            "{e}"
        );
        let e = parse(&format!("{sl}ca_file = \"/x.pem\"\n")).unwrap_err();
        assert!(e.starts_with("notify.syslog.ca_file = "), "{e}");
        let e = parse(&sl.replace("udp", "plain")).unwrap_err();
        assert!(e.contains("unknown variant `plain`"), "{e}");
        let e = parse(&format!("{sl}format = \"leef\"\n")).unwrap_err();
        assert!(e.contains("expected `rfc5424` or `cef`"), "{e}");
        assert_eq!(
            parse(&format!("{sl}facility = \"local0\"\nformat = \"cef\"\n"))
                .unwrap()
                .syslog[0]
                .facility_code(),
            16
        );
    }

    #[test]
    fn password_from_file_or_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let mut e: EmailConfig = toml::from_str(&EMAIL.replace("[notify.email]\n", "")).unwrap();
        assert!(e.password().unwrap().is_none(), "no username: no AUTH");
        e.username = Some("u".into());
        assert!(e.password().err().unwrap().contains("password_file"));
        e.password_file = Some(p);
        assert_eq!(e.password().unwrap().unwrap().expose(), "s3cret");
        e.password_file = None;
        e.password_env = Some("OFFBOX_TEST_SMTP_PW_UNSET".into());
        let err = e.password().err().unwrap();
        assert!(err.contains("OFFBOX_TEST_SMTP_PW_UNSET"), "{err}");
    }
}
