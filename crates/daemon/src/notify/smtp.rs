//! Email channels: one plain-text mail per batch over SMTP, always upgraded
//! with STARTTLS before anything is sent (a server that does not offer it is
//! an error, never a plain-text fallback), with lettre on rustls/ring. The
//! server's certificate is checked against the system's roots, or only
//! against `ca_file`. Validated at plan time ([`EmailTarget::plan`]).

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::NotifyConfig;

use super::{Batch, DeliverError, PlanError};

/// A validated email channel.
#[derive(Clone, Debug)]
pub struct EmailTarget {
    pub host: String,
    pub port: u16,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// (username, password).
    pub login: Option<(String, String)>,
    /// DER of the CA certificates to trust instead of the system's.
    pub ca_der: Vec<Vec<u8>>,
    pub timeout: Duration,
}

impl EmailTarget {
    pub fn plan(c: &NotifyConfig) -> Result<EmailTarget, PlanError> {
        for (key, set) in [
            ("url", c.url.is_some()),
            ("token", c.token.is_some()),
            ("chat_id", c.chat_id.is_some()),
            ("topic", c.topic.is_some()),
        ] {
            if set {
                return Err((
                    format!("`{key}` does not apply to kind email"),
                    Some("remove it; email takes smtp, from, to, username, password".into()),
                ));
            }
        }
        let server = c.smtp.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
            (
                "`smtp` is missing".to_string(),
                Some("name the server, e.g. smtp = \"mail.example.org:587\"".into()),
            )
        })?;
        let (host, port) = match server.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p.parse::<u16>().map_err(|_| {
                    (
                        format!("`smtp` `{server}`: `{p}` is not a port"),
                        Some("write host or host:port".into()),
                    )
                })?;
                (h.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (server, 587),
        };
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err((
                format!("`smtp` `{server}` is not a host or host:port"),
                None,
            ));
        }
        let mailbox = |what: &str, s: &str| -> Result<Mailbox, PlanError> {
            s.parse::<Mailbox>().map_err(|e| {
                (
                    format!("`{what}` `{s}` is not an email address ({e})"),
                    None,
                )
            })
        };
        let from = mailbox(
            "from",
            c.from
                .as_deref()
                .ok_or_else(|| ("`from` is missing".to_string(), None))?,
        )?;
        if c.to.is_empty() {
            return Err((
                "`to` is missing".into(),
                Some("list the recipients, e.g. to = [\"ops@example.org\"]".into()),
            ));
        }
        let to =
            c.to.iter()
                .map(|t| mailbox("to", t))
                .collect::<Result<Vec<_>, _>>()?;
        let login = match (&c.username, &c.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err((
                    "`username` and `password` go together".into(),
                    Some("give both, or neither for a server that takes mail without login".into()),
                ));
            }
        };
        let ca_der = match &c.ca_file {
            None => Vec::new(),
            Some(p) => {
                let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(p)
                    .map_err(|e| {
                        (
                            format!("`ca_file` {} cannot be read: {e}", p.display()),
                            None,
                        )
                    })?
                    .filter_map(Result::ok)
                    .map(|c| c.to_vec())
                    .collect();
                if certs.is_empty() {
                    return Err((
                        format!("`ca_file` {} holds no PEM certificate", p.display()),
                        Some("give a file of -----BEGIN CERTIFICATE----- blocks".into()),
                    ));
                }
                certs
            }
        };
        Ok(EmailTarget {
            host: host.to_string(),
            port,
            from,
            to,
            login,
            ca_der,
            timeout: c.timeout,
        })
    }
}

/// A started email channel.
pub struct EmailSender {
    target: EmailTarget,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailSender {
    pub fn build(t: &EmailTarget, hello: &str) -> Result<EmailSender, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut tls = TlsParameters::builder(t.host.clone());
        if !t.ca_der.is_empty() {
            tls = tls.certificate_store(CertificateStore::None);
            for der in &t.ca_der {
                let c = Certificate::from_der(der.clone())
                    .map_err(|e| format!("ca_file certificate: {e}"))?;
                tls = tls.add_root_certificate(c);
            }
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| format!("TLS for the SMTP server cannot be set up: {e}"))?;
        let hello = if hello.is_empty() {
            ClientId::default()
        } else {
            ClientId::Domain(hello.to_string())
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(t.host.clone())
            .port(t.port)
            // Required: the session is upgraded before MAIL FROM, or nothing is sent.
            .tls(Tls::Required(tls))
            .timeout(Some(t.timeout))
            .hello_name(hello);
        if let Some((u, p)) = &t.login {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(EmailSender {
            target: t.clone(),
            transport: b.build(),
        })
    }

    pub async fn send(&self, batch: &Batch) -> Result<(), DeliverError> {
        let t = &self.target;
        let mut m = Message::builder()
            .from(t.from.clone())
            .subject(batch.title())
            .header(ContentType::TEXT_PLAIN);
        for to in &t.to {
            m = m.to(to.clone());
        }
        let msg = m.body(batch.text()).map_err(|e| DeliverError::Smtp {
            message: format!("the mail cannot be built: {e}"),
            permanent: true,
        })?;
        self.transport.send(msg).await.map(|_| ()).map_err(|e| {
            if e.is_timeout() {
                return DeliverError::Timeout(t.timeout);
            }
            let mut message = format!("SMTP {}:{}: {e}", t.host, t.port);
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                message.push_str(&format!(": {c}"));
                cur = c.source();
            }
            DeliverError::Smtp {
                message,
                permanent: e.is_permanent(),
            }
        })
    }
}
