//! The configuration file (`/etc/shield/shield.toml`): its shape, its
//! defaults, and errors that name the file, the line and the fix.
//!
//! This module only parses. Turning a config into something that runs
//! (compiling regexes, resolving paths, choosing a firewall) is `plan`'s job.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shield_detect::ScenarioSpec;
use toml::Spanned;

/// Where `shield` looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/shield/shield.toml";
/// Where state lives when the config does not say.
pub const DEFAULT_STORE: &str = "/var/lib/shield/shield.db";
/// The control socket the CLI uses to talk to a running daemon.
pub const DEFAULT_SOCKET: &str = "/run/shield/shield.sock";
/// The gate and bouncer API listen here unless told otherwise (loopback only).
pub const DEFAULT_API: &str = "127.0.0.1:8087";

/// A config problem, located in its file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
    pub hint: Option<String>,
}

/// Several config problems: `shield check` reports them all at once.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default, rename = "source")]
    pub sources: Vec<Spanned<SourceConfig>>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<RuleConfig>>,
    #[serde(default, rename = "scenario")]
    pub scenarios: Vec<Spanned<ScenarioSpec>>,
    #[serde(default, rename = "jail")]
    pub jails: Vec<Spanned<JailConfig>>,
    #[serde(default)]
    pub decisions: DecisionsConfig,
    #[serde(default)]
    pub firewall: FirewallConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub union: Option<UnionConfig>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Notification channels (`[[notify]]`), each sent one message per batch window.
    #[serde(default, rename = "notify")]
    pub notify: Vec<Spanned<NotifyConfig>>,
    /// Exec actions (`[[action]]`), each run once per batch window.
    #[serde(default, rename = "action")]
    pub actions: Vec<Spanned<ActionConfig>>,
    /// CrowdSec content run on sources that name a `log_type` (see `crate::crowdsec`).
    #[serde(default)]
    pub crowdsec: Option<Spanned<CrowdsecConfig>>,
    /// Blocklists (`[[list]]`), see `crate::lists`.
    #[serde(default, rename = "list")]
    pub lists: Vec<Spanned<ListConfig>>,
}

/// `[[list]]`: a blocklist read from a file or an HTTPS URL and refreshed on
/// an interval; its entries become decisions of origin `lists:NAME`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    pub name: String,
    /// A local file (one of `file` and `url`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An `https://` URL (`http://` only to a loopback address).
    #[serde(default)]
    pub url: Option<String>,
    /// How often the list is read again (default 1h).
    #[serde(default = "default_list_refresh", with = "humantime_serde")]
    pub refresh: Duration,
    /// How long an entry is banned for, renewed while the list keeps it
    /// (default 24h; must be longer than `refresh`).
    #[serde(default = "default_list_duration", with = "humantime_serde")]
    pub duration: Duration,
    /// `auto` (default), `lines`, `csv` or `json`.
    #[serde(default)]
    pub format: crate::lists::parse::Format,
    /// PEM file of the CA (or CAs) that alone is trusted for `url`
    /// (default: the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `ban` (default), `captcha` or `throttle`.
    #[serde(default = "default_list_kind", rename = "type")]
    pub kind: String,
    /// Widest IPv4 network taken from the list (default 8).
    #[serde(default)]
    pub min_prefix_v4: Option<u8>,
    /// Widest IPv6 network taken from the list (default 19).
    #[serde(default)]
    pub min_prefix_v6: Option<u8>,
}

fn default_list_refresh() -> Duration {
    Duration::from_secs(3600)
}

fn default_list_duration() -> Duration {
    Duration::from_secs(86400)
}

fn default_list_kind() -> String {
    "ban".into()
}

/// `[crowdsec]`: which CrowdSec content the daemon runs.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct CrowdsecConfig {
    /// A CrowdSec configuration directory (`/etc/crowdsec`): runs what that installation runs.
    #[serde(default)]
    pub config_dir: Option<PathBuf>,
    /// With `config_dir`: the data files directory (default: its config.yaml's `data_dir`).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// A hub checkout (`parsers/`, `scenarios/`, `.index.json`), instead of `config_dir`.
    #[serde(default)]
    pub hub: Option<PathBuf>,
    /// With `hub`: the grok patterns directory (default: `patterns` beside the hub).
    #[serde(default)]
    pub patterns: Option<PathBuf>,
    /// With `hub`: the data files directory (default: `data` beside the hub).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// With `hub`: collections to run, e.g. `["crowdsecurity/linux", "crowdsecurity/nginx"]`.
    #[serde(default)]
    pub collections: Vec<String>,
    /// With `hub`: more items by hub name.
    #[serde(default)]
    pub parsers: Vec<String>,
    #[serde(default)]
    pub scenarios: Vec<String>,
    #[serde(default)]
    pub postoverflows: Vec<String>,
    /// Ban length for scenarios with `remediation: true` (CrowdSec's default profile: 4h).
    #[serde(default = "default_ban", with = "humantime_serde")]
    pub ban: Duration,
}

fn default_ban() -> Duration {
    Duration::from_secs(4 * 3600)
}

/// `[webhook]`: the first notification channel, kept as it was written: a
/// generic-JSON `[[notify]]` channel named `webhook` whose batch window is
/// `min_interval`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http(s)://host[:port]/path`.
    pub url: String,
    /// The batch window: at most one POST per interval, carrying every new decision of it.
    #[serde(default = "default_webhook_interval", with = "humantime_serde")]
    pub min_interval: Duration,
    /// Accepted for old configs; batching replaced the burst.
    #[serde(default = "default_webhook_burst")]
    pub burst: u32,
}

/// The kinds of `[[notify]]` channel: each has its own message template.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// A Slack incoming webhook (`{"text": ...}`).
    Slack,
    /// A Discord webhook (`{"content": ...}`).
    Discord,
    /// A Telegram bot (`sendMessage` to `chat_id`).
    Telegram,
    /// An ntfy server and topic.
    Ntfy,
    /// A Gotify server and application token.
    Gotify,
    /// The batch as JSON, POSTed to `url`.
    Json,
    /// Email over SMTP with STARTTLS.
    Email,
    /// An `[[action]]` (never written in `[[notify]]`).
    #[serde(skip_deserializing)]
    Exec,
}

impl std::fmt::Display for NotifyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotifyKind::Slack => "slack",
            NotifyKind::Discord => "discord",
            NotifyKind::Telegram => "telegram",
            NotifyKind::Ntfy => "ntfy",
            NotifyKind::Gotify => "gotify",
            NotifyKind::Json => "json",
            NotifyKind::Email => "email",
            NotifyKind::Exec => "exec",
        })
    }
}

/// `[[notify]]`: one notification channel. Which keys apply depends on `kind`
/// (`plan` says which one is missing or out of place).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Names the channel in logs, `/metrics` and `shield status`.
    pub name: String,
    pub kind: NotifyKind,
    /// The endpoint: the webhook URL (slack, discord, json), the server
    /// (ntfy, gotify, telegram's API base, default `https://api.telegram.org`).
    #[serde(default)]
    pub url: Option<String>,
    /// Telegram bot token, Gotify application token, ntfy or json bearer token.
    #[serde(default)]
    pub token: Option<String>,
    /// Telegram chat to post to.
    #[serde(default)]
    pub chat_id: Option<String>,
    /// ntfy topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// A PEM file of CA certificates: the only roots trusted for this channel
    /// (for a private CA); without it, the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Email: the SMTP server, `host` or `host:port` (default port 587).
    #[serde(default)]
    pub smtp: Option<String>,
    /// Email: sender address.
    #[serde(default)]
    pub from: Option<String>,
    /// Email: recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// Email: SMTP login (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// One message per window, carrying every new decision of it.
    #[serde(default = "default_notify_batch", with = "humantime_serde")]
    pub batch: Duration,
    /// Attempts after the first failure, with doubling `backoff`.
    #[serde(default = "default_notify_retries")]
    pub retries: u32,
    #[serde(default = "default_notify_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Time allowed for one attempt.
    #[serde(default = "default_notify_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Decisions held for the next message at most; beyond, they are dropped and counted.
    #[serde(default = "default_notify_queue")]
    pub queue: usize,
    /// Which decisions: by origin, `local`, `manual`, `union`, `list` (default: all but `list`).
    #[serde(default = "default_notify_origins")]
    pub origins: Vec<String>,
}

/// `[[action]]`: a command run once per batch window with the batch as JSON on stdin.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Names the action in logs, `/metrics` and `shield status`.
    pub name: String,
    /// The program (absolute path) and its arguments; no shell.
    pub command: Vec<String>,
    #[serde(default = "default_action_batch", with = "humantime_serde")]
    pub batch: Duration,
    /// The command is killed after this long.
    #[serde(default = "default_action_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Runs at once at most; batches wait (and grow) meanwhile.
    #[serde(default = "default_action_concurrency")]
    pub concurrency: usize,
    /// Decisions held for the next run at most; beyond, they are dropped and counted.
    #[serde(default = "default_notify_queue")]
    pub queue: usize,
    /// Which decisions: by origin, `local`, `manual`, `union`, `list` (default: all but `list`).
    #[serde(default = "default_notify_origins")]
    pub origins: Vec<String>,
}

fn default_notify_origins() -> Vec<String> {
    ["local", "manual", "union"].map(String::from).to_vec()
}

fn default_notify_batch() -> Duration {
    Duration::from_secs(10)
}
fn default_notify_retries() -> u32 {
    3
}
fn default_notify_backoff() -> Duration {
    Duration::from_secs(2)
}
fn default_notify_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_notify_queue() -> usize {
    10_000
}
fn default_action_batch() -> Duration {
    Duration::from_secs(2)
}
fn default_action_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_action_concurrency() -> usize {
    1
}

fn default_webhook_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_webhook_burst() -> u32 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_store")]
    pub path: PathBuf,
    /// How long ended decisions and old alerts are kept before pruning.
    #[serde(default = "default_keep", with = "humantime_serde")]
    pub keep: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store(),
            keep: default_keep(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Most keys (addresses) tracked per source; the coldest are evicted.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Triggering lines kept with each alert.
    #[serde(default = "default_evidence")]
    pub evidence_lines: usize,
    /// IPv6 addresses are grouped by this prefix (a host usually owns a /64).
    #[serde(default = "default_v6")]
    pub v6_prefix: u8,
    /// Turn off the default scenarios of the rule packs (keep only `[[scenario]]`s).
    #[serde(default)]
    pub no_default_scenarios: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_keys: default_max_keys(),
            evidence_lines: default_evidence(),
            v6_prefix: default_v6(),
            no_default_scenarios: false,
        }
    }
}

/// The `type` of a `[[source]]` (default `file`).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    #[default]
    File,
    Journald,
    Stdin,
    Syslog,
}

impl SourceKind {
    /// The kind as written after `type =`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Journald => "journald",
            SourceKind::Stdin => "stdin",
            SourceKind::Syslog => "syslog",
        }
    }
}

/// `[[source]]`: where lines come from and the rules they go through.
///
/// The TOML is one flat table (`type` picks the kind, `file` when absent);
/// it deserializes into [`SourceInput`], one variant per kind holding only
/// that kind's keys, so a key of another kind (`paths` on a journald source)
/// is refused at its line instead of being ignored.
#[derive(Debug)]
pub struct SourceConfig {
    pub name: String,
    /// Built-in rule packs applied to these lines (see `shield explain --list`).
    pub packs: Vec<Spanned<String>>,
    /// Names of `[[rule]]`s applied to these lines (rules whose `service` is
    /// this source's name apply too).
    pub rules: Vec<String>,
    /// CrowdSec log type of these lines (acquis.yaml's `labels.type`, e.g. `nginx`): they go
    /// through the `[crowdsec]` content instead of packs and rules.
    pub log_type: Option<Spanned<String>>,
    /// The kind and its own keys.
    pub input: SourceInput,
}

/// A source's kind with the keys that kind takes.
#[derive(Debug)]
pub enum SourceInput {
    /// `type = "file"`: files or globs, followed across rotation.
    File {
        paths: Vec<Spanned<String>>,
        /// Read a file never seen before from its start (default: from its end).
        from_start: bool,
    },
    /// `type = "stdin"`.
    Stdin,
    /// `type = "syslog"`: a listener.
    Syslog {
        /// Address the listener binds, e.g. `127.0.0.1:5514` (the default).
        listen: Option<String>,
        /// Transports: `udp`, `tcp` (default both).
        protocols: Vec<String>,
    },
    /// `type = "journald"`.
    Journald {
        /// journalctl matches, e.g. `["_SYSTEMD_UNIT=ssh.service"]`.
        journal_match: Vec<String>,
        /// A journal directory to read instead of the system journal
        /// (journalctl `--directory`), e.g. a remote host's journal written
        /// by `systemd-journal-remote`.
        journal_directory: Option<String>,
    },
}

impl SourceInput {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceInput::File { .. } => SourceKind::File,
            SourceInput::Stdin => SourceKind::Stdin,
            SourceInput::Syslog { .. } => SourceKind::Syslog,
            SourceInput::Journald { .. } => SourceKind::Journald,
        }
    }
}

/// The `[[source]]` table as written: every kind's keys, each optional and
/// located, checked against `type` by [`RawSource::typed`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    #[serde(default, rename = "type")]
    kind: SourceKind,
    #[serde(default)]
    packs: Vec<Spanned<String>>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    log_type: Option<Spanned<String>>,
    paths: Option<Spanned<Vec<Spanned<String>>>>,
    from_start: Option<Spanned<bool>>,
    journal_match: Option<Spanned<Vec<String>>>,
    journal_directory: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    protocols: Option<Spanned<Vec<String>>>,
}

/// A key of another kind on a source: where, what, and the fix.
struct Misplaced {
    span: std::ops::Range<usize>,
    msg: String,
    hint: String,
}

thread_local! {
    /// The location and fix of the last [`Misplaced`] key, handed from
    /// `SourceConfig`'s `Deserialize` (which can only return a message) to
    /// [`parse`], which names the key's line. Set and taken on one thread
    /// within one `parse` call.
    static MISPLACED: std::cell::RefCell<Option<Misplaced>> = const { std::cell::RefCell::new(None) };
}

impl RawSource {
    /// The typed source, or the first key that belongs to another kind.
    fn typed(self) -> Result<SourceConfig, Misplaced> {
        let kind = self.kind;
        let misplaced = |key: &str, owner: SourceKind, span: std::ops::Range<usize>| Misplaced {
            span,
            msg: format!(
                "source `{}` (type = \"{}\"): `{key}` applies to type = \"{}\" only",
                self.name,
                kind.as_str(),
                owner.as_str()
            ),
            hint: format!(
                "remove `{key}`, or set type = \"{}\" if that is what this source reads",
                owner.as_str()
            ),
        };
        let keys = [
            (
                "paths",
                SourceKind::File,
                self.paths.as_ref().map(|v| v.span()),
            ),
            (
                "from_start",
                SourceKind::File,
                self.from_start.as_ref().map(|v| v.span()),
            ),
            (
                "journal_match",
                SourceKind::Journald,
                self.journal_match.as_ref().map(|v| v.span()),
            ),
            (
                "journal_directory",
                SourceKind::Journald,
                self.journal_directory.as_ref().map(|v| v.span()),
            ),
            (
                "listen",
                SourceKind::Syslog,
                self.listen.as_ref().map(|v| v.span()),
            ),
            (
                "protocols",
                SourceKind::Syslog,
                self.protocols.as_ref().map(|v| v.span()),
            ),
        ];
        if let Some((key, owner, Some(span))) = keys
            .into_iter()
            .find(|(_, owner, span)| span.is_some() && *owner != kind)
        {
            return Err(misplaced(key, owner, span));
        }
        let input = match kind {
            SourceKind::File => SourceInput::File {
                paths: self.paths.map(Spanned::into_inner).unwrap_or_default(),
                from_start: self.from_start.is_some_and(Spanned::into_inner),
            },
            SourceKind::Stdin => SourceInput::Stdin,
            SourceKind::Syslog => SourceInput::Syslog {
                listen: self.listen.map(Spanned::into_inner),
                protocols: self.protocols.map(Spanned::into_inner).unwrap_or_default(),
            },
            SourceKind::Journald => SourceInput::Journald {
                journal_match: self
                    .journal_match
                    .map(Spanned::into_inner)
                    .unwrap_or_default(),
                journal_directory: self.journal_directory.map(Spanned::into_inner),
            },
        };
        Ok(SourceConfig {
            name: self.name,
            packs: self.packs,
            rules: self.rules,
            log_type: self.log_type,
            input,
        })
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawSource::deserialize(d)?.typed().map_err(|m| {
            let msg = m.msg.clone();
            MISPLACED.with(|c| *c.borrow_mut() = Some(m));
            serde::de::Error::custom(msg)
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default = "default_service")]
    pub service: String,
    pub regex: Spanned<String>,
}

/// A fail2ban-style jail: a `filter.d` filter on some logs, with fail2ban's
/// `maxretry`/`findtime`/`bantime` semantics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailConfig {
    pub name: String,
    /// A filter name under `filter_dir` or a path, with optional `[mode=...]`.
    pub filter: Spanned<String>,
    #[serde(default = "default_filter_dir")]
    pub filter_dir: PathBuf,
    /// Log files (the default `backend = "file"`).
    #[serde(default)]
    pub logpath: Vec<Spanned<String>>,
    /// `file` (default: `logpath`) or `systemd`: the journal, through
    /// `journalmatch` (fail2ban's `backend = systemd`).
    #[serde(default)]
    pub backend: JailBackend,
    /// journalctl matches for `backend = "systemd"`, fail2ban's syntax
    /// (`_SYSTEMD_UNIT=sshd.service + _COMM=sshd`); default: the filter's own.
    #[serde(default)]
    pub journalmatch: Option<String>,
    /// With `backend = "systemd"`: a journal directory instead of the system
    /// journal (journalctl `--directory`).
    #[serde(default)]
    pub journal_directory: Option<String>,
    /// Addresses and networks this jail never counts (fail2ban's per-jail
    /// `ignoreip`; `[decisions] allowlist` is the global list).
    #[serde(default)]
    pub ignoreip: Vec<Spanned<String>>,
    #[serde(default = "default_maxretry")]
    pub maxretry: u32,
    #[serde(default = "default_findtime", with = "humantime_serde")]
    pub findtime: Duration,
    #[serde(default = "default_bantime", with = "humantime_serde")]
    pub bantime: Duration,
    #[serde(default)]
    pub from_start: bool,
}

/// Where a jail reads its lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JailBackend {
    /// The files of `logpath`.
    #[default]
    File,
    /// The systemd journal, filtered by `journalmatch`.
    Systemd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsConfig {
    /// Networks that are never banned, whatever the origin.
    #[serde(default)]
    pub allowlist: Vec<Spanned<String>>,
    /// Also never ban this host's own addresses (default true).
    #[serde(default = "yes")]
    pub allow_own_addresses: bool,
    /// Never ban the peer of an established SSH session to this host (the
    /// operator's own connection; default true). Set false to allow it.
    #[serde(default = "yes")]
    pub allow_ssh_sessions: bool,
    #[serde(default)]
    pub escalation: Escalation,
    /// Files of networks never banned, in any list format (see `crate::lists::parse`).
    #[serde(default)]
    pub allowlist_files: Vec<Spanned<PathBuf>>,
    /// `[[list]]` names whose entries are allowed instead of banned, refreshed like any list.
    #[serde(default)]
    pub allowlist_lists: Vec<Spanned<String>>,
}

impl Default for DecisionsConfig {
    fn default() -> Self {
        DecisionsConfig {
            allowlist_files: Vec::new(),
            allowlist_lists: Vec::new(),
            allowlist: Vec::new(),
            allow_own_addresses: true,
            allow_ssh_sessions: true,
            escalation: Escalation::default(),
        }
    }
}

/// Repeat offenders: like fail2ban's `bantime.increment`, each new offence
/// multiplies the ban by `factor`, up to `max`; offences are forgotten after `forget`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_factor")]
    pub factor: f64,
    #[serde(default = "default_max_ban", with = "humantime_serde")]
    pub max: Duration,
    #[serde(default = "default_forget", with = "humantime_serde")]
    pub forget: Duration,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            enabled: true,
            factor: default_factor(),
            max: default_max_ban(),
            forget: default_forget(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// nftables if `nft` is present, else ipset + iptables, else dry-run.
    #[default]
    Auto,
    Nftables,
    Ipset,
    DryRun,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallConfig {
    #[serde(default)]
    pub backend: Backend,
    #[serde(default = "default_table")]
    pub table: String,
    /// Also drop banned sources in the forward hook (routers, container hosts).
    #[serde(default)]
    pub forward: bool,
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Tests only: run nft inside this network namespace.
    #[serde(default)]
    pub netns: Option<String>,
    /// nftables: send element changes over netlink (default) rather than one
    /// `nft -f -` process per batch.
    #[serde(default = "default_true")]
    pub netlink: bool,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            backend: Backend::Auto,
            table: default_table(),
            forward: false,
            priority: default_priority(),
            netns: None,
            netlink: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Gate (`/gate`) and CrowdSec-compatible bouncer API (`/v1/...`). Empty string disables.
    #[serde(default = "default_api")]
    pub listen: String,
    /// Control socket for the CLI (mode 0600, root only).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Proxies whose `client_header` is believed. Unset: loopback
    /// (`127.0.0.1/32`, `::1/128`); `[]`: none.
    #[serde(default)]
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// The one header naming the client when the peer is a trusted proxy:
    /// `X-Real-IP` (default), another header name, `X-Forwarded-For` (the
    /// right-most untrusted entry) or `none`.
    #[serde(default = "default_client_header")]
    pub client_header: String,
    /// Bearer token for management endpoints on `listen` (`/api/...`). Unset: management only on the socket.
    #[serde(default)]
    pub token: Option<Spanned<String>>,
    /// Connections served at once on `listen` (and, separately, on `socket`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections one address may hold on `listen` (trusted proxies excepted).
    #[serde(default = "default_max_per_peer")]
    pub max_connections_per_peer: usize,
    /// Time a client has to send a complete request head.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// PEM certificate (then its intermediates) for `listen`; with `tls_key`,
    /// `listen` speaks HTTPS only. Reloaded on SIGHUP and when the file changes.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA that bouncers' client certificates must chain to; such a
    /// certificate with an OU in `client_ou` replaces an API key, the bouncer
    /// named by its CN. Unset: no client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// OUs of client certificates that identify a bouncer (CrowdSec's default: `bouncer-ou`).
    #[serde(default = "default_client_ou")]
    pub client_ou: Vec<String>,
}

fn default_client_ou() -> Vec<String> {
    vec![shield_enforce::DEFAULT_CLIENT_OU.to_string()]
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_api(),
            socket: default_socket(),
            trusted_proxies: None,
            client_header: default_client_header(),
            token: None,
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_per_peer(),
            header_timeout: default_header_timeout(),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            client_ou: default_client_ou(),
        }
    }
}

fn default_client_header() -> String {
    "X-Real-IP".into()
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_per_peer() -> usize {
    64
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UnionConfig {
    /// This member's name in the treaty.
    pub member: String,
    pub key: PathBuf,
    pub treaty: PathBuf,
    pub listen: SocketAddr,
}

fn default_store() -> PathBuf {
    DEFAULT_STORE.into()
}
fn default_keep() -> Duration {
    Duration::from_secs(7 * 86400)
}
/// An address seen once costs about 91 bytes (shield-detect's key_memory
/// test), so 1M addresses fit in about 100 MB.
fn default_max_keys() -> usize {
    1_000_000
}
fn default_evidence() -> usize {
    3
}
fn default_v6() -> u8 {
    64
}
fn default_service() -> String {
    "custom".into()
}
fn default_filter_dir() -> PathBuf {
    "/etc/fail2ban/filter.d".into()
}
fn default_maxretry() -> u32 {
    5
}
fn default_findtime() -> Duration {
    Duration::from_secs(600)
}
fn default_bantime() -> Duration {
    Duration::from_secs(600)
}
fn yes() -> bool {
    true
}
fn default_factor() -> f64 {
    2.0
}
fn default_max_ban() -> Duration {
    Duration::from_secs(7 * 86400)
}
fn default_forget() -> Duration {
    Duration::from_secs(30 * 86400)
}
fn default_table() -> String {
    "shield".into()
}
fn default_priority() -> i32 {
    -10
}
fn default_true() -> bool {
    true
}
fn default_api() -> String {
    DEFAULT_API.into()
}
fn default_socket() -> PathBuf {
    DEFAULT_SOCKET.into()
}

/// A loaded config and where it came from (for error locations).
pub struct Loaded {
    pub config: Config,
    /// `None` when Shield runs on its embedded defaults.
    pub path: Option<PathBuf>,
    pub text: String,
}

impl Loaded {
    /// A located error at byte `span.start` of the file.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        msg: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        let (line, col) = line_col(&self.text, span.start);
        ConfigError {
            file: self.file_name(),
            line,
            col,
            msg: msg.into(),
            hint,
        }
    }

    pub fn file_name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "<built-in defaults>".into(),
        }
    }
}

/// Loads `path`, or the default config file, or the embedded defaults.
///
/// An explicit `path` must exist. Without one, `/etc/shield/shield.toml` is
/// used when present; otherwise Shield guards sshd on built-in defaults.
pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigErrors> {
    let chosen = match path {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()),
    };
    let Some(p) = chosen else {
        return Ok(Loaded {
            config: builtin_default(),
            path: None,
            text: String::new(),
        });
    };
    let text = std::fs::read_to_string(&p).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: p.display().to_string(),
            line: 0,
            col: 0,
            msg: format!("cannot read the config: {e}"),
            hint: Some(if path.is_some() {
                "check the --config path".into()
            } else {
                format!("fix the permissions of {DEFAULT_CONFIG} or pass --config")
            }),
        }])
    })?;
    parse(&text, Some(p))
}

/// Parses config text; `path` is used in error messages.
pub fn parse(text: &str, path: Option<PathBuf>) -> Result<Loaded, ConfigErrors> {
    MISPLACED.with(|c| c.borrow_mut().take());
    match toml::from_str::<Config>(text) {
        Ok(config) => Ok(Loaded {
            config,
            path,
            text: text.to_string(),
        }),
        Err(e) => {
            let loaded = Loaded {
                config: Config::default(),
                path,
                text: text.to_string(),
            };
            let msg = e.message().trim().to_string();
            let (span, hint) = match MISPLACED.with(|c| c.borrow_mut().take()) {
                Some(m) => (m.span, Some(m.hint)),
                None => (e.span().unwrap_or(0..0), hint_for(&msg)),
            };
            Err(ConfigErrors(vec![loaded.error_at(span, msg, hint)]))
        }
    }
}

fn hint_for(msg: &str) -> Option<String> {
    if msg.contains("unknown field") {
        Some("remove the key or fix its spelling; the keys are listed in the README's config example".into())
    } else if msg.contains("unknown variant") {
        Some("use one of the values listed in the message".into())
    } else if msg.contains("duration") || msg.contains("time unit") {
        Some("write durations like \"90s\", \"10m\", \"4h\", \"7d\"".into())
    } else if msg.contains("missing field") {
        Some("add the missing key to this table".into())
    } else {
        None
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// The program lines of sshd on every current system: OpenSSH >= 9.8 logs
/// from `sshd-session` (Debian 13) and 10.x also from `sshd-auth`; the
/// built-in default follows all three (journalctl ORs values of one field).
pub const SSHD_MATCHES: &[&str] = &["_COMM=sshd", "_COMM=sshd-session", "_COMM=sshd-auth"];

/// The config Shield runs on when there is no config file: guard sshd from
/// auth.log (or journald where there is no such file), state in /var/lib/shield.
pub fn builtin_default() -> Config {
    let file = ["/var/log/auth.log", "/var/log/secure"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let input = match file {
        Some(f) => SourceInput::File {
            paths: vec![Spanned::new(0..0, f.to_string())],
            from_start: false,
        },
        None => SourceInput::Journald {
            journal_match: SSHD_MATCHES.iter().map(|m| m.to_string()).collect(),
            journal_directory: None,
        },
    };
    let source = SourceConfig {
        name: "sshd".into(),
        packs: vec![Spanned::new(0..0, "sshd".to_string())],
        rules: Vec::new(),
        log_type: None,
        input,
    };
    Config {
        sources: vec![Spanned::new(0..0, source)],
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_located() {
        let text = "[store]\npath = \"/tmp/x.db\"\n\n[engine]\nmax_keyz = 5\n";
        let err = parse(text, Some("/etc/shield/shield.toml".into()))
            .err()
            .unwrap();
        let s = err.to_string();
        assert!(
            s.starts_with("/etc/shield/shield.toml:5:1: unknown field `max_keyz`"),
            "{s}"
        );
        assert!(s.contains("hint:"), "{s}");
    }

    #[test]
    fn bad_duration_is_located() {
        let text = "[store]\nkeep = \"forever\"\n";
        let err = parse(text, Some("f.toml".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("f.toml:2:"), "{err}");
    }

    #[test]
    fn full_example_parses() {
        let text = include_str!("../../../examples/shield.toml");
        let l = parse(text, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!l.config.sources.is_empty());
    }

    #[test]
    fn defaults_guard_sshd() {
        let c = builtin_default();
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].get_ref().name, "sshd");
        assert_eq!(c.store.path, PathBuf::from(DEFAULT_STORE));
    }
}
