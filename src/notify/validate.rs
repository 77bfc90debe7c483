//! Checks of the `[notify]` values whose range their types do not express, run when the
//! config is parsed, each error naming its key ([`InvalidValue`]).

use super::config::{
    facility_code, EmailConfig, NotifyConfig, SyslogConfig, SyslogTransport, DEFAULT_TIMEOUT_SECS,
    FACILITIES, MAX_TIMEOUT_SECS,
};

/// A value of `[notify]` that is out of range, with its key and what is allowed; `config`
/// turns it into its `ConfigError::Value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    /// The key, with its table (`notify.email.to`).
    pub key: &'static str,
    /// The value as written.
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

impl NotifyConfig {
    /// Checks the values whose range their types do not express.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let bad = |key, value: String, allowed: &str| {
            Err(InvalidValue {
                key,
                value,
                allowed: allowed.to_string(),
            })
        };
        let r = self.remind_after_hours;
        if !r.is_finite() || !(0.0..=8760.0).contains(&r) {
            return bad(
                "notify.remind_after_hours",
                r.to_string(),
                "it must be 0 (no reminders) to 8760 hours; fractions are allowed",
            );
        }
        if let Some(e) = &self.email {
            validate_email(e)?;
        }
        for s in &self.syslog {
            validate_syslog(s)?;
        }
        Ok(())
    }
}

fn check_timeout(key: &'static str, t: Option<u64>) -> Result<(), InvalidValue> {
    match t {
        Some(t) if t == 0 || t > MAX_TIMEOUT_SECS => Err(InvalidValue {
            key,
            value: t.to_string(),
            allowed: format!("it must be 1 to {MAX_TIMEOUT_SECS} seconds (the default is {DEFAULT_TIMEOUT_SECS})"),
        }),
        _ => Ok(()),
    }
}

fn validate_email(e: &EmailConfig) -> Result<(), InvalidValue> {
    let bad = |key, value: String, allowed: &str| {
        Err(InvalidValue {
            key,
            value,
            allowed: allowed.to_string(),
        })
    };
    if e.server.trim().is_empty() {
        return bad(
            "notify.email.server",
            "\"\"".into(),
            "name the SMTP server (a host name that its certificate names)",
        );
    }
    if e.port == Some(0) {
        return bad(
            "notify.email.port",
            "0".into(),
            "it must be 1 to 65535 (587 for starttls, 465 for tls)",
        );
    }
    if e.from.parse::<lettre::Address>().is_err() {
        return bad(
            "notify.email.from",
            format!("{:?}", e.from),
            "it must be one email address, like offbox@appliance.example.net",
        );
    }
    if e.to.is_empty() {
        return bad(
            "notify.email.to",
            "[]".into(),
            "list at least one recipient address",
        );
    }
    if let Some(a) = e.to.iter().find(|a| a.parse::<lettre::Address>().is_err()) {
        return bad(
            "notify.email.to",
            format!("{a:?}"),
            "each entry must be one email address, like pam-ops@example.net",
        );
    }
    if e.username.is_some() && e.password_file.is_none() && e.password_env.is_none() {
        return bad("notify.email.username", "set without a password".into(), "add notify.email.password_file (or password_env), or remove username to send without AUTH");
    }
    if e.username.is_none() && (e.password_file.is_some() || e.password_env.is_some()) {
        return bad(
            "notify.email.password_file",
            "set without a username".into(),
            "add notify.email.username",
        );
    }
    check_timeout("notify.email.timeout_secs", e.timeout_secs)
}

fn validate_syslog(s: &SyslogConfig) -> Result<(), InvalidValue> {
    let bad = |key, value: String, allowed: String| {
        Err(InvalidValue {
            key,
            value,
            allowed,
        })
    };
    if s.address.trim().is_empty() {
        return bad(
            "notify.syslog.address",
            "\"\"".into(),
            "name the collector (host name or IP address)".into(),
        );
    }
    if s.port == Some(0) {
        return bad(
            "notify.syslog.port",
            "0".into(),
            "it must be 1 to 65535 (514 for udp/tcp, 6514 for tls)".into(),
        );
    }
    if facility_code(&s.facility).is_none() {
        let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
        return bad(
            "notify.syslog.facility",
            format!("{:?}", s.facility),
            format!("it must be one of {}", names.join(", ")),
        );
    }
    if s.ca_file.is_some() && s.transport != SyslogTransport::Tls {
        return bad(
            "notify.syslog.ca_file",
            "set".into(),
            "ca_file applies to transport = \"tls\" only; remove it or use tls".into(),
        );
    }
    check_timeout("notify.syslog.timeout_secs", s.timeout_secs)
}
