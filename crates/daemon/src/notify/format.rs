//! The batch a sink sends ([`Batch`]: host and decisions, the JSON given to
//! `json` channels and to actions on stdin) and the message each channel
//! kind makes of it: a short text summary (title plus one line per decision,
//! the first [`LISTED`] of them) wrapped in the JSON that service expects.
//! It sends nothing.

use std::sync::Arc;

use serde::Serialize;
use shield_core::Decision;

use crate::config::NotifyKind;

/// Decisions listed one per line in a text message; the rest are counted.
pub const LISTED: usize = 20;

/// One window's new decisions, as sent.
#[derive(Debug, Serialize)]
pub struct Batch {
    /// Always `decisions`.
    pub event: &'static str,
    /// The host name of the machine that decided.
    pub host: String,
    pub count: usize,
    pub decisions: Vec<Item>,
}

/// One decision in a batch.
#[derive(Debug, Serialize)]
pub struct Item {
    pub id: i64,
    /// An address (`192.0.2.7`) or a range (`2001:db8::/64`).
    pub address: String,
    pub scope: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The scenario or rule that raised it (or the reason given by an operator).
    pub scenario: String,
    /// `local`, `manual`, `union:MEMBER`, `lists:NAME`, …
    pub origin: String,
    pub duration_s: u64,
    pub created: i64,
    pub expires: i64,
}

impl Batch {
    pub fn new(host: &str, decisions: Vec<Arc<Decision>>) -> Batch {
        let decisions: Vec<Item> = decisions
            .iter()
            .map(|d| {
                let t = d.target.to_string();
                let address = t
                    .strip_suffix("/32")
                    .filter(|a| !a.contains(':'))
                    .or_else(|| t.strip_suffix("/128"))
                    .unwrap_or(&t)
                    .to_string();
                Item {
                    id: d.id,
                    address,
                    scope: d.scope.as_str().to_string(),
                    kind: d.kind.to_string(),
                    scenario: d.scenario.clone(),
                    origin: d.origin.to_string(),
                    duration_s: d.duration_s(),
                    created: d.created,
                    expires: d.expires,
                }
            })
            .collect();
        Batch {
            event: "decisions",
            host: host.to_string(),
            count: decisions.len(),
            decisions,
        }
    }

    /// `Shield on HOST: 3 new decisions`.
    pub fn title(&self) -> String {
        let host = if self.host.is_empty() {
            "this host"
        } else {
            &self.host
        };
        let s = if self.count == 1 { "" } else { "s" };
        format!("Shield on {host}: {} new decision{s}", self.count)
    }

    /// One line per decision (the first [`LISTED`]), then how many more.
    pub fn lines(&self) -> String {
        let mut out = String::new();
        for i in self.decisions.iter().take(LISTED) {
            let d = humantime::format_duration(std::time::Duration::from_secs(i.duration_s));
            out.push_str(&format!(
                "{} {} for {d} ({}, origin {})\n",
                i.kind, i.address, i.scenario, i.origin
            ));
        }
        if self.count > LISTED {
            out.push_str(&format!("… and {} more\n", self.count - LISTED));
        }
        out
    }

    /// Title, blank line, lines: the body of a text message.
    pub fn text(&self) -> String {
        format!("{}\n\n{}", self.title(), self.lines())
    }
}

/// Cuts `s` to at most `max` characters (services refuse longer messages).
fn cut(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// The JSON body `kind` expects for `batch`; `extra` carries the kind's
/// destination field (Telegram's `chat_id`, ntfy's `topic`).
pub fn body(kind: NotifyKind, batch: &Batch, extra: Option<&str>) -> serde_json::Value {
    use serde_json::json;
    match kind {
        // Slack incoming webhooks: `text` (mrkdwn), 40k characters at most.
        NotifyKind::Slack => json!({
            "text": cut(format!("*{}*\n{}", batch.title(), batch.lines()), 39_000),
        }),
        // Discord webhooks: `content`, 2000 characters at most.
        NotifyKind::Discord => json!({
            "username": "Shield",
            "content": cut(format!("**{}**\n{}", batch.title(), batch.lines()), 2000),
        }),
        // Telegram Bot API sendMessage: 4096 characters at most.
        NotifyKind::Telegram => json!({
            "chat_id": extra.unwrap_or_default(),
            "text": cut(batch.text(), 4096),
            "disable_web_page_preview": true,
        }),
        // ntfy JSON publishing (POST to the server root).
        NotifyKind::Ntfy => json!({
            "topic": extra.unwrap_or_default(),
            "title": batch.title(),
            "message": cut(batch.lines(), 4000),
            "tags": ["shield"],
            "priority": 3,
        }),
        // Gotify POST /message.
        NotifyKind::Gotify => json!({
            "title": batch.title(),
            "message": batch.lines(),
            "priority": 5,
        }),
        NotifyKind::Json | NotifyKind::Email | NotifyKind::Exec => {
            serde_json::to_value(batch).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(i: u32) -> Arc<Decision> {
        Arc::new(Decision {
            id: i as i64,
            scope: shield_core::Scope::Ip,
            target: format!("192.0.2.{}/32", i % 250).parse().unwrap(),
            kind: shield_core::DecisionType::Ban,
            scenario: "ssh-bf".into(),
            origin: shield_core::Origin::Local,
            created: 100,
            expires: 100 + 4 * 3600,
        })
    }

    #[test]
    fn text_lists_the_first_decisions_and_counts_the_rest() {
        let b = Batch::new("gw1", (1..=25).map(decision).collect());
        assert_eq!(b.title(), "Shield on gw1: 25 new decisions");
        let lines = b.lines();
        assert!(
            lines.starts_with("ban 192.0.2.1 for 4h (ssh-bf, origin local)\n"),
            "{lines}"
        );
        assert_eq!(lines.lines().count(), LISTED + 1);
        assert!(lines.ends_with("… and 5 more\n"), "{lines}");
    }

    #[test]
    fn each_kind_has_its_shape() {
        let b = Batch::new("gw1", vec![decision(7)]);
        let s = body(NotifyKind::Slack, &b, None);
        assert!(s["text"].as_str().unwrap().contains("192.0.2.7"), "{s}");
        let d = body(NotifyKind::Discord, &b, None);
        assert!(d["content"].as_str().unwrap().contains("ssh-bf"), "{d}");
        let t = body(NotifyKind::Telegram, &b, Some("-100"));
        assert_eq!(t["chat_id"], "-100");
        let n = body(NotifyKind::Ntfy, &b, Some("alerts"));
        assert_eq!(n["topic"], "alerts");
        assert_eq!(n["title"], "Shield on gw1: 1 new decision");
        let g = body(NotifyKind::Gotify, &b, None);
        assert_eq!(g["priority"], 5);
        let j = body(NotifyKind::Json, &b, None);
        assert_eq!(j["event"], "decisions");
        assert_eq!(j["decisions"][0]["address"], "192.0.2.7");
        assert_eq!(j["decisions"][0]["duration_s"], 4 * 3600);
        assert_eq!(j["decisions"][0]["origin"], "local");
        assert_eq!(j["decisions"][0]["type"], "ban");
    }

    #[test]
    fn long_messages_are_cut_to_the_service_limit() {
        let b = Batch::new("h", (1..=25).map(decision).collect());
        let long = "x".repeat(5000);
        assert_eq!(cut(long, 2000).chars().count(), 2000);
        let d = body(NotifyKind::Discord, &b, None);
        assert!(d["content"].as_str().unwrap().chars().count() <= 2000);
    }
}
