//! The email channel: one plain-text message per event, sent by lettre over SMTP with
//! STARTTLS (required, never opportunistic) or implicit TLS, the server certificate verified
//! against `notify.email.ca_file` or the system's roots, and AUTH PLAIN/LOGIN when a
//! username is set. The password is read by the one secret reader and never printed.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport};

use super::config::{EmailConfig, SmtpTls};
use super::{format, Event};

/// Sends one event by email; the error says what failed and what to check.
pub fn send(
    cfg: &EmailConfig,
    appliance: &str,
    event: &Event,
    reminder: bool,
) -> Result<(), String> {
    let message = build_message(cfg, appliance, event, reminder)?;
    let transport = transport(cfg, appliance)?;
    transport
        .send(&message)
        .map(|_| ())
        .map_err(|e| explain(cfg, &e))
}

fn build_message(
    cfg: &EmailConfig,
    appliance: &str,
    event: &Event,
    reminder: bool,
) -> Result<Message, String> {
    let addr = |key: &str, a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| format!("notify.email.{key} = {a:?} is not an email address: {e}"))
    };
    let mut b = Message::builder()
        .from(addr("from", &cfg.from)?)
        .subject(format::email_subject(event, appliance, reminder))
        .header(ContentType::TEXT_PLAIN);
    for to in &cfg.to {
        b = b.to(addr("to", to)?);
    }
    b.body(format::email_body(event, appliance))
        .map_err(|e| format!("the email could not be built: {e}"))
}

fn transport(cfg: &EmailConfig, appliance: &str) -> Result<SmtpTransport, String> {
    let mut tls = TlsParameters::builder(cfg.server.clone());
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| format!("cannot read notify.email.ca_file = {}: {e}", ca.display()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            format!(
                "notify.email.ca_file = {} is not a PEM certificate file: {e}",
                ca.display()
            )
        })?;
        tls = tls
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    let tls = tls
        .build_rustls()
        .map_err(|e| format!("TLS setup for the SMTP server failed: {e}"))?;
    let tls = match cfg.tls {
        SmtpTls::Starttls => Tls::Required(tls),
        SmtpTls::Tls => Tls::Wrapper(tls),
    };
    let mut b = SmtpTransport::builder_dangerous(cfg.server.as_str())
        .port(cfg.port())
        .tls(tls)
        .timeout(Some(cfg.timeout()))
        .hello_name(ClientId::Domain(appliance.to_string()));
    if let (Some(user), Some(pw)) = (&cfg.username, cfg.password()?) {
        b = b
            .credentials(Credentials::new(user.clone(), pw.expose().to_string()))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(b.build())
}

/// The error of a failed send, with the likely cause and what to do.
fn explain(cfg: &EmailConfig, e: &lettre::transport::smtp::Error) -> String {
    let server = format!("{}:{}", cfg.server, cfg.port());
    let text = e.to_string();
    let code = e.status().map(|c| c.to_string());
    let ca = match &cfg.ca_file {
        Some(p) => format!("notify.email.ca_file ({})", p.display()),
        None => "the system's CA roots (set notify.email.ca_file to the CA that signs it)".into(),
    };
    let lower = text.to_lowercase();
    let auth_code = matches!(code.as_deref(), Some("535" | "534" | "530" | "454"));
    if code.as_deref() == Some("535") || (auth_code && lower.contains("auth")) {
        let user = cfg.username.as_deref().unwrap_or("(none)");
        return format!("the SMTP server {server} refused the login of user {user:?} ({text}); check notify.email.username and the password in notify.email.password_file (or password_env)");
    }
    if e.is_tls() || lower.contains("certificate") || lower.contains("tls") {
        return format!("the TLS connection to the SMTP server {server} failed, the server's certificate was not verified ({text}); check that it is signed by {ca} and names {}", cfg.server);
    }
    if e.is_timeout() {
        return format!("the SMTP server {server} did not answer within {} s ({text}); check notify.email.server and port, and the network", cfg.timeout().as_secs());
    }
    if lower.contains("refused") || lower.contains("connection error") || lower.contains("network")
    {
        return format!("cannot connect to the SMTP server {server} ({text}); check notify.email.server and port, that the server runs, and the network");
    }
    if e.is_permanent() {
        return format!("the SMTP server {server} rejected the message ({text}); check notify.email.from and to, and the server's relay rules");
    }
    format!("sending email through {server} failed ({text}); check the [notify.email] settings and the server's log")
}
