//! The HTTP(S) channels (slack, discord, telegram, ntfy, gotify, json): where
//! each kind POSTs, with which credentials, over a reqwest client on rustls
//! with the ring provider; `ca_file` replaces the system roots with a private
//! CA. Validated at plan time ([`HttpTarget::plan`]), built at start.

use std::time::Duration;

use crate::config::{NotifyConfig, NotifyKind};

use super::{Batch, DeliverError, PlanError};

/// A validated HTTP channel.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub kind: NotifyKind,
    /// Where the POST goes (for telegram, with the bot token in its path).
    pub url: reqwest::Url,
    /// Telegram's `chat_id` or ntfy's `topic`.
    pub extra: Option<String>,
    /// Gotify's application token, or an ntfy/json bearer token.
    pub token: Option<String>,
    /// PEM of the CA certificates to trust instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl HttpTarget {
    /// Checks the keys `c.kind` needs and reads its CA file.
    pub fn plan(c: &NotifyConfig) -> Result<HttpTarget, PlanError> {
        let need = |what: &str, v: &Option<String>| -> Result<String, PlanError> {
            v.clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| (format!("`{what}` is missing"), None))
        };
        let default_url = match c.kind {
            NotifyKind::Telegram => Some("https://api.telegram.org"),
            NotifyKind::Ntfy => Some("https://ntfy.sh"),
            _ => None,
        };
        let url_text = match (&c.url, default_url) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err(("`url` is missing".into(), None)),
        };
        let mut url = reqwest::Url::parse(&url_text).map_err(|e| {
            (
                format!("`url` `{url_text}` is not a URL ({e})"),
                Some("write it as https://host[:port]/path".into()),
            )
        })?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err((
                format!("`url` `{url_text}` is not an http(s) URL"),
                Some("write it as https://host[:port]/path".into()),
            ));
        }
        let join = |url: &reqwest::Url, tail: &str| {
            let mut u = url.clone();
            let base = u.path().trim_end_matches('/').to_string();
            u.set_path(&format!("{base}/{tail}"));
            u
        };
        let mut extra = None;
        let mut token = c.token.clone();
        match c.kind {
            NotifyKind::Telegram => {
                let t = need("token", &c.token)?;
                if t.contains(['/', '?', '#']) {
                    return Err(("`token` is not a Telegram bot token".into(), None));
                }
                extra = Some(need("chat_id", &c.chat_id)?);
                url = join(&url, &format!("bot{t}/sendMessage"));
                token = None;
            }
            NotifyKind::Ntfy => extra = Some(need("topic", &c.topic)?),
            NotifyKind::Gotify => {
                need("token", &c.token)?;
                url = join(&url, "message");
            }
            _ => {}
        }
        for (key, set, allowed) in [
            (
                "chat_id",
                c.chat_id.is_some(),
                c.kind == NotifyKind::Telegram,
            ),
            ("topic", c.topic.is_some(), c.kind == NotifyKind::Ntfy),
            (
                "token",
                c.token.is_some(),
                !matches!(c.kind, NotifyKind::Slack | NotifyKind::Discord),
            ),
            ("smtp", c.smtp.is_some(), false),
            ("from", c.from.is_some(), false),
            ("to", !c.to.is_empty(), false),
            ("username", c.username.is_some(), false),
            ("password", c.password.is_some(), false),
        ] {
            if set && !allowed {
                return Err((
                    format!("`{key}` does not apply to kind {}", c.kind),
                    Some("remove it".into()),
                ));
            }
        }
        let ca_pem = match &c.ca_file {
            None => None,
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| {
                    (
                        format!("`ca_file` {} cannot be read: {e}", p.display()),
                        None,
                    )
                })?;
                match reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(v) if !v.is_empty() => {}
                    _ => {
                        return Err((
                            format!("`ca_file` {} holds no PEM certificate", p.display()),
                            Some("give a file of -----BEGIN CERTIFICATE----- blocks".into()),
                        ));
                    }
                }
                Some(pem)
            }
        };
        Ok(HttpTarget {
            kind: c.kind,
            url,
            extra,
            token,
            ca_pem,
            timeout: c.timeout,
        })
    }
}

/// A started HTTP channel: its target and client.
pub struct HttpSender {
    target: HttpTarget,
    client: reqwest::Client,
}

impl HttpSender {
    pub fn build(t: &HttpTarget) -> Result<HttpSender, String> {
        // One provider in the whole process (ring); an Err means it is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .timeout(t.timeout)
            .connect_timeout(t.timeout)
            .user_agent(concat!("shield/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &t.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?;
            b = b.tls_certs_only(certs);
        }
        let client = b
            .build()
            .map_err(|e| format!("the HTTPS client cannot be built: {e}"))?;
        Ok(HttpSender {
            target: t.clone(),
            client,
        })
    }

    pub async fn send(&self, batch: &Batch) -> Result<(), DeliverError> {
        let t = &self.target;
        let body = super::format::body(t.kind, batch, t.extra.as_deref());
        let mut req = self.client.post(t.url.clone()).json(&body);
        match (t.kind, &t.token) {
            (NotifyKind::Gotify, Some(k)) => req = req.header("X-Gotify-Key", k),
            (NotifyKind::Ntfy | NotifyKind::Json, Some(k)) => req = req.bearer_auth(k),
            _ => {}
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                DeliverError::Timeout(t.timeout)
            } else {
                // without_url: a Telegram URL carries the bot token.
                DeliverError::Transport(error_chain(&e.without_url()))
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(DeliverError::Status {
            status: status.as_u16(),
            body: text.chars().take(200).collect(),
        })
    }
}

/// The error and its sources on one line (reqwest's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
