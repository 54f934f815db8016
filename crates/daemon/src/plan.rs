//! Config → plan: everything validated and resolved before anything starts
//! (regexes compiled, scenarios bound to rules, paths checked, the firewall
//! backend chosen), so a broken config never half-starts the daemon.
//! `shield check` stops here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shield_core::Net;
use shield_core::{Allowlist, DecisionType, Scope};
use shield_detect::{
    BucketKind, CustomRule, Engine, EngineOptions, NativeMatcher, RuleError, RuleSpec, Rules,
    ScenarioSpec,
};

use crate::config::{
    Backend, ConfigError, ConfigErrors, Escalation, Loaded, SourceInput, UnionConfig,
};
use crate::decide::{self, Decider};

/// Where a pipeline's lines come from.
#[derive(Clone, Debug)]
pub enum Input {
    File {
        globs: Vec<String>,
        from_start: bool,
    },
    Journald {
        matches: Vec<String>,
        /// journalctl `--directory`.
        directory: Option<String>,
    },
    Stdin,
    /// A syslog listener (UDP and/or TCP).
    Syslog {
        udp: Option<SocketAddr>,
        tcp: Option<SocketAddr>,
    },
}

/// Which rule engine reads a pipeline's lines.
#[derive(Clone, Debug)]
pub enum MatcherPlan {
    Native {
        packs: Vec<String>,
        /// The `[[rule]]`s this pipeline uses, compiled once by the plan.
        custom: Vec<CustomRule>,
    },
    Fail2ban {
        filter: String,
        dir: PathBuf,
    },
    /// CrowdSec content on lines of one CrowdSec log type.
    Crowdsec(crate::crowdsec::CrowdsecPipe),
}

/// One input with its rules and scenarios: becomes one reader thread.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub name: String,
    pub input: Input,
    pub matcher: MatcherPlan,
    pub scenarios: Vec<ScenarioSpec>,
}

/// The chosen firewall backend and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallPlan {
    pub backend: Backend,
    pub table: String,
    pub forward: bool,
    pub priority: i32,
    pub netns: Option<String>,
    pub netlink: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiPlan {
    pub listen: Option<SocketAddr>,
    pub socket: PathBuf,
    pub trusted_proxies: Vec<Net>,
    pub client_header: shield_enforce::ClientHeader,
    pub token: Option<String>,
    /// Limits of the TCP listener (`trusted` = `trusted_proxies`); the socket
    /// uses the same total and header deadline.
    pub limits: shield_enforce::ListenLimits,
    /// HTTPS on `listen`: certificate, key, client CA (loaded once to check them).
    pub tls: Option<shield_enforce::TlsFiles>,
}

/// A validated config, ready to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub config_file: String,
    pub store_path: PathBuf,
    pub keep: Duration,
    pub engine: EngineSettings,
    pub pipelines: Vec<Pipeline>,
    pub decider: Decider,
    pub firewall: FirewallPlan,
    pub api: ApiPlan,
    pub union: Option<UnionConfig>,
    /// Notification channels (`[[notify]]`, `[webhook]`) and exec actions (`[[action]]`).
    pub notify: Vec<crate::notify::SinkPlan>,
    /// Blocklists and allowlist feeds (`[[list]]`), see `crate::lists`.
    pub lists: Vec<crate::lists::ListPlan>,
    /// The pipelines' engines, built while validating them; the readers take
    /// them instead of compiling the rules again.
    pub built: BuiltEngines,
}

/// Engines a plan built, by pipeline name, each taken once. Clones of a plan
/// share them; a pipeline whose engine was taken (a second start of the same
/// plan) builds a new one.
#[derive(Clone, Default)]
pub struct BuiltEngines(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Engine>>>,
);

impl BuiltEngines {
    fn put(&self, pipeline: &str, e: Engine) {
        // Mutex: touched at plan time and once per reader start, never per line.
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pipeline.to_string(), e);
    }

    /// The engine built for `pipeline`, if it is still there.
    pub fn take(&self, pipeline: &str) -> Option<Engine> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(pipeline)
    }
}

impl std::fmt::Debug for BuiltEngines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_set().entries(m.keys()).finish()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct EngineSettings {
    pub max_keys: usize,
    pub evidence_lines: usize,
    pub v6_prefix: u8,
}

impl Plan {
    /// The CrowdSec content of this plan, if a source runs it.
    pub fn crowdsec(&self) -> Option<std::sync::Arc<crate::crowdsec::Shared>> {
        self.pipelines.iter().find_map(|p| match &p.matcher {
            MatcherPlan::Crowdsec(c) => Some(c.shared.clone()),
            _ => None,
        })
    }
}

impl EngineSettings {
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            max_keys: self.max_keys,
            evidence_lines: self.evidence_lines,
            default_v6_prefix: self.v6_prefix,
        }
    }
}

impl Pipeline {
    /// Builds the rule engine of this pipeline (compiles its regexes).
    pub fn matcher(&self) -> Result<Rules, String> {
        match &self.matcher {
            MatcherPlan::Native { packs, custom } => {
                let packs: Vec<&str> = packs.iter().map(String::as_str).collect();
                NativeMatcher::with_rules(&packs, custom)
                    .map(Rules::from)
                    .map_err(|e| e.to_string())
            }
            MatcherPlan::Fail2ban { filter, dir } => crate::fail2ban::load(filter, dir),
            MatcherPlan::Crowdsec(c) => Ok(Rules::Other(Box::new(c.matcher()))),
        }
    }

    /// Builds the whole engine (matcher + scenarios).
    pub fn engine(&self, settings: EngineSettings) -> Result<Engine, String> {
        Engine::new(self.matcher()?, &self.scenarios, settings.options()).map_err(|e| e.to_string())
    }
}

/// fail2ban's jail semantics as a scenario: `maxretry` failures within
/// `findtime` ban the address (not its /64) for `bantime`.
pub fn jail_scenario(
    name: &str,
    maxretry: u32,
    findtime: Duration,
    bantime: Duration,
) -> ScenarioSpec {
    ScenarioSpec {
        name: name.to_string(),
        rules: vec!["*".into()],
        kind: BucketKind::Window,
        capacity: maxretry.max(1),
        leak: findtime,
        distinct: None,
        quiet: Duration::ZERO,
        decision: DecisionType::Ban,
        scope: Scope::Ip,
        duration: bantime,
        v6_prefix: Some(128),
        ignore: Vec::new(),
    }
}

/// A pipeline that reads lines with one fail2ban filter under jail defaults
/// (what `shield replay --fail2ban-filter` runs).
pub fn fail2ban_pipeline(
    filter: &str,
    dir: &Path,
    maxretry: u32,
    findtime: Duration,
    bantime: Duration,
) -> Pipeline {
    let name = filter
        .split('[')
        .next()
        .unwrap_or(filter)
        .rsplit('/')
        .next()
        .unwrap_or(filter);
    let name = name.trim_end_matches(".conf").to_string();
    Pipeline {
        name: name.clone(),
        input: Input::Stdin,
        matcher: MatcherPlan::Fail2ban {
            filter: filter.to_string(),
            dir: dir.to_path_buf(),
        },
        scenarios: vec![jail_scenario(
            &format!("f2b-{name}"),
            maxretry,
            findtime,
            bantime,
        )],
    }
}

/// Validates and resolves a loaded config.
pub fn plan(l: &Loaded) -> Result<Plan, ConfigErrors> {
    let c = &l.config;
    let mut errs: Vec<ConfigError> = Vec::new();
    let settings = EngineSettings {
        max_keys: c.engine.max_keys,
        evidence_lines: c.engine.evidence_lines,
        v6_prefix: c.engine.v6_prefix,
    };
    if c.engine.v6_prefix == 0 || c.engine.v6_prefix > 128 {
        errs.push(l.error_at(
            0..0,
            "[engine] v6_prefix must be between 1 and 128",
            Some("64 is usual".into()),
        ));
    }
    if c.engine.max_keys == 0 {
        errs.push(l.error_at(0..0, "[engine] max_keys must be at least 1", None));
    }

    // Custom rules.
    // Custom rules: each compiled here, once; the pipelines that use it
    // share the compiled regex.
    let mut custom: Vec<(CustomRule, std::ops::Range<usize>)> = Vec::new();
    for r in &c.rules {
        let span = r.span();
        let r = r.get_ref();
        let spec = RuleSpec {
            name: r.name.clone(),
            service: r.service.clone(),
            regex: r.regex.get_ref().clone(),
        };
        let rule = match CustomRule::new(spec) {
            Ok(rule) => rule,
            Err(RuleError::BadRegex { error, .. }) => {
                errs.push(l.error_at(
                    r.regex.span(),
                    format!(
                        "rule `{}`: the regex does not compile: {}",
                        r.name,
                        first_line(&error)
                    ),
                    Some("regexes use Rust `regex` syntax; named groups are (?P<name>...)".into()),
                ));
                continue;
            }
            Err(RuleError::NoHostGroup { .. }) => {
                errs.push(l.error_at(
                    r.regex.span(),
                    format!("rule `{}` has no `host` group", r.name),
                    Some("capture the source address as (?P<host>...)".into()),
                ));
                continue;
            }
            Err(e) => {
                errs.push(l.error_at(r.regex.span(), e.to_string(), None));
                continue;
            }
        };
        if custom.iter().any(|(c, _)| c.spec().name == r.name) {
            errs.push(l.error_at(
                span.clone(),
                format!("rule `{}` is defined twice", r.name),
                None,
            ));
        }
        custom.push((rule, span));
    }

    let crowdsec = crate::crowdsec::prepare(l, c.crowdsec.as_ref(), &mut errs);
    let known_packs = shield_detect::pack_names();
    let mut pipelines = Vec::new();
    let built = BuiltEngines::default();
    let mut used_scenarios = vec![false; c.scenarios.len()];
    let mut used_rules = vec![false; custom.len()];
    for s in &c.sources {
        let span = s.span();
        let s = s.get_ref();
        let input = match &s.input {
            SourceInput::File { paths, from_start } => {
                if paths.is_empty() {
                    errs.push(l.error_at(
                        span.clone(),
                        format!("source `{}` has no paths", s.name),
                        Some("add paths = [\"/var/log/...\"] or set type = \"journald\"".into()),
                    ));
                }
                for p in paths {
                    if let Some(e) = check_path(p.get_ref()) {
                        errs.push(l.error_at(p.span(), e, Some("fix the path, or use a glob (e.g. /var/log/nginx/*.log) for files that may not exist yet".into())));
                    }
                }
                Input::File {
                    globs: paths.iter().map(|p| p.get_ref().clone()).collect(),
                    from_start: *from_start,
                }
            }
            SourceInput::Journald {
                journal_match,
                journal_directory,
            } => Input::Journald {
                matches: journal_match.clone(),
                directory: journal_directory.clone(),
            },
            SourceInput::Stdin => Input::Stdin,
            SourceInput::Syslog { listen, protocols } => {
                let addr = listen.as_deref().unwrap_or("127.0.0.1:5514");
                let addr: Option<SocketAddr> = match addr.parse() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        errs.push(l.error_at(
                            span.clone(),
                            format!(
                                "source `{}`: listen `{addr}` is not an address:port",
                                s.name
                            ),
                            Some("e.g. listen = \"127.0.0.1:5514\"".into()),
                        ));
                        None
                    }
                };
                let (mut udp, mut tcp) = (protocols.is_empty(), protocols.is_empty());
                for p in protocols {
                    match p.as_str() {
                        "udp" => udp = true,
                        "tcp" => tcp = true,
                        other => errs.push(l.error_at(
                            span.clone(),
                            format!("source `{}`: unknown syslog protocol `{other}`", s.name),
                            Some("use protocols = [\"udp\", \"tcp\"] or one of them".into()),
                        )),
                    }
                }
                Input::Syslog {
                    udp: addr.filter(|_| udp),
                    tcp: addr.filter(|_| tcp),
                }
            }
        };
        if s.log_type.is_some() {
            match crate::crowdsec::pipe(l, s, span.clone(), crowdsec.as_ref()) {
                Ok(cs) => pipelines.push(Pipeline {
                    name: s.name.clone(),
                    input,
                    scenarios: cs.scenarios(),
                    matcher: MatcherPlan::Crowdsec(cs),
                }),
                Err(e) => errs.push(e),
            }
            continue;
        }
        let mut packs = Vec::new();
        for p in &s.packs {
            if !known_packs.contains(&p.get_ref().as_str()) {
                errs.push(l.error_at(
                    p.span(),
                    format!("unknown rule pack `{}`", p.get_ref()),
                    Some(format!("built-in packs: {}", known_packs.join(", "))),
                ));
            } else {
                packs.push(p.get_ref().clone());
            }
        }
        let mut rules = Vec::new();
        for (i, (r, _)) in custom.iter().enumerate() {
            let spec = r.spec();
            if spec.service == s.name || s.rules.contains(&spec.name) {
                rules.push(r.clone());
                used_rules[i] = true;
            }
        }
        for name in &s.rules {
            if !custom.iter().any(|(r, _)| &r.spec().name == name) {
                errs.push(l.error_at(
                    span.clone(),
                    format!(
                        "source `{}` names rule `{name}`, which no [[rule]] defines",
                        s.name
                    ),
                    None,
                ));
            }
        }
        if packs.is_empty() && rules.is_empty() && !s.packs.is_empty() {
            continue; // already reported
        }
        if packs.is_empty() && rules.is_empty() {
            errs.push(l.error_at(
                span.clone(),
                format!("source `{}` has no rules", s.name),
                Some("add packs = [\"sshd\"] (or another pack), or a [[rule]] with service = this source's name".into()),
            ));
            continue;
        }
        let mut pipe = Pipeline {
            name: s.name.clone(),
            input,
            matcher: MatcherPlan::Native {
                packs: packs.clone(),
                custom: rules,
            },
            scenarios: Vec::new(),
        };
        let matcher = match pipe.matcher() {
            Ok(m) => m,
            Err(e) => {
                errs.push(l.error_at(span.clone(), format!("source `{}`: {e}", s.name), None));
                continue;
            }
        };
        let rule_names: Vec<String> = matcher.rules().iter().map(|r| r.name.clone()).collect();
        let mut scen: Vec<ScenarioSpec> = if c.engine.no_default_scenarios {
            Vec::new()
        } else {
            let p: Vec<&str> = packs.iter().map(String::as_str).collect();
            shield_detect::default_scenarios(&p)
        };
        for (i, user) in c.scenarios.iter().enumerate() {
            let u = user.get_ref();
            if u.rules.iter().any(|pat| {
                rule_names
                    .iter()
                    .any(|r| shield_detect::rule_matches(pat, r))
            }) {
                used_scenarios[i] = true;
                scen.retain(|d| d.name != u.name);
                scen.push(u.clone());
            }
        }
        pipe.scenarios = scen;
        match Engine::new(matcher, &pipe.scenarios, settings.options()) {
            Ok(e) => built.put(&pipe.name, e),
            Err(e) => {
                errs.push(l.error_at(span.clone(), format!("source `{}`: {e}", s.name), None));
                continue;
            }
        }
        pipelines.push(pipe);
    }
    for (i, u) in c.scenarios.iter().enumerate() {
        if !used_scenarios[i] {
            errs.push(l.error_at(
                u.span(),
                format!("scenario `{}` names rules that no source uses: {:?}", u.get_ref().name, u.get_ref().rules),
                Some("name a rule of a source's packs (e.g. \"sshd-*\") or of a [[rule]]; `shield explain --list` lists them".into()),
            ));
        }
    }
    for (i, (r, span)) in custom.iter().enumerate() {
        let r = r.spec();
        if !used_rules[i] {
            errs.push(l.error_at(
                span.clone(),
                format!("rule `{}` is used by no source", r.name),
                Some(format!("set service = \"<source name>\" or list it in a source's rules (service is `{}`)", r.service)),
            ));
        }
    }

    // fail2ban jails.
    for j in &c.jails {
        let span = j.span();
        let j = j.get_ref();
        for p in &j.logpath {
            if let Some(e) = check_path(p.get_ref()) {
                errs.push(l.error_at(p.span(), e, None));
            }
        }
        let mut scenario = jail_scenario(&j.name, j.maxretry, j.findtime, j.bantime);
        for a in &j.ignoreip {
            match decide::parse_target(a.get_ref()) {
                Ok(n) => scenario.ignore.push(n.get()),
                Err(e) => errs.push(l.error_at(
                    a.span(),
                    format!("jail `{}`: ignoreip: {e}", j.name),
                    None,
                )),
            }
        }
        let input = match j.backend {
            crate::config::JailBackend::File => {
                if j.logpath.is_empty() {
                    errs.push(l.error_at(
                        span.clone(),
                        format!("jail `{}` has no logpath", j.name),
                        Some("list its log files in logpath, or set backend = \"systemd\" to read the journal".into()),
                    ));
                }
                Input::File {
                    globs: j.logpath.iter().map(|p| p.get_ref().clone()).collect(),
                    from_start: j.from_start,
                }
            }
            crate::config::JailBackend::Systemd => {
                let own = match &j.journalmatch {
                    Some(m) => Some(m.clone()),
                    None => crate::fail2ban::journalmatch(j.filter.get_ref(), &j.filter_dir)
                        .ok()
                        .flatten(),
                };
                let matches: Vec<String> = own
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                if matches.is_empty() {
                    errs.push(l.error_at(
                        span.clone(),
                        format!("jail `{}` reads the journal but neither it nor its filter sets journalmatch", j.name),
                        Some("set journalmatch, e.g. \"_SYSTEMD_UNIT=ssh.service + _COMM=sshd\"".into()),
                    ));
                }
                Input::Journald {
                    matches,
                    directory: j.journal_directory.clone(),
                }
            }
        };
        let pipe = Pipeline {
            name: j.name.clone(),
            input,
            matcher: MatcherPlan::Fail2ban {
                filter: j.filter.get_ref().clone(),
                dir: j.filter_dir.clone(),
            },
            scenarios: vec![scenario],
        };
        match pipe.engine(settings) {
            Ok(e) => {
                built.put(&pipe.name, e);
                pipelines.push(pipe)
            }
            Err(e) => errs.push(l.error_at(
                j.filter.span(),
                format!("jail `{}`: {e}", j.name),
                Some("name a filter under filter_dir (default /etc/fail2ban/filter.d) or give a path".into()),
            )),
        }
        let _ = span;
    }

    // Allowlist.
    let mut allow = Vec::new();
    for a in &c.decisions.allowlist {
        match decide::parse_target(a.get_ref()) {
            Ok(n) => allow.push(n),
            Err(e) => errs.push(l.error_at(a.span(), e, None)),
        }
    }
    for f in &c.decisions.allowlist_files {
        match crate::lists::allowlist_file(f.get_ref()) {
            Ok(nets) => allow.extend(nets),
            Err(e) => errs.push(l.error_at(f.span(), e, None)),
        }
    }
    let mut lists = Vec::new();
    for lc in &c.lists {
        let lc_ref = lc.get_ref();
        let allow_it = c
            .decisions
            .allowlist_lists
            .iter()
            .any(|n| n.get_ref() == &lc_ref.name);
        if lists
            .iter()
            .any(|p: &crate::lists::ListPlan| p.name == lc_ref.name)
        {
            errs.push(l.error_at(
                lc.span(),
                format!("two [[list]] entries are named `{}`", lc_ref.name),
                Some("give each list its own name".into()),
            ));
            continue;
        }
        match crate::lists::plan_list(lc_ref, allow_it) {
            Ok(p) => lists.push(p),
            Err(e) => errs.push(l.error_at(lc.span(), e, None)),
        }
    }
    for n in &c.decisions.allowlist_lists {
        if !c.lists.iter().any(|lc| &lc.get_ref().name == n.get_ref()) {
            errs.push(l.error_at(
                n.span(),
                format!(
                    "allowlist_lists names `{}`, which no [[list]] defines",
                    n.get_ref()
                ),
                Some("add a [[list]] with that name (file or url)".into()),
            ));
        }
    }
    if c.decisions.allow_own_addresses {
        allow.extend(decide::own_addresses());
    }
    let esc: Escalation = c.decisions.escalation.clone();
    if !(1.0..=100.0).contains(&esc.factor) {
        errs.push(l.error_at(
            0..0,
            "[decisions.escalation] factor must be between 1 and 100",
            None,
        ));
    }

    let mut proxies = Vec::new();
    match &c.api.trusted_proxies {
        None => proxies = shield_enforce::loopback(),
        Some(list) => {
            for p in list {
                match decide::parse_target(p.get_ref()) {
                    Ok(n) => proxies.push(n),
                    Err(e) => errs.push(l.error_at(p.span(), e, None)),
                }
            }
        }
    }
    let client_header = match c.api.client_header.parse::<shield_enforce::ClientHeader>() {
        Ok(h) => h,
        Err(e) => {
            errs.push(l.error_at(0..0, format!("[api] client_header: {e}"), None));
            shield_enforce::ClientHeader::None
        }
    };
    if let Some(t) = &c.api.token {
        let bits = shield_enforce::secret_bits(t.get_ref());
        if bits < shield_enforce::MIN_SECRET_BITS {
            errs.push(l.error_at(
                t.span(),
                format!(
                    "[api] token is too easy to guess (about {bits} bits; at least {} are needed)",
                    shield_enforce::MIN_SECRET_BITS
                ),
                Some("generate one with `openssl rand -hex 32` (or `head -c 32 /dev/urandom | base64`)".into()),
            ));
        }
    }
    if c.api.max_connections == 0 || c.api.max_connections_per_peer == 0 {
        errs.push(l.error_at(
            0..0,
            "[api] max_connections and max_connections_per_peer must be at least 1",
            None,
        ));
    }
    if c.api.header_timeout.is_zero() {
        errs.push(l.error_at(
            0..0,
            "[api] header_timeout must be longer than 0s",
            Some("e.g. \"5s\"".into()),
        ));
    }
    let tls = match (&c.api.tls_cert, &c.api.tls_key) {
        (None, None) => {
            if c.api.client_ca.is_some() {
                errs.push(l.error_at(
                    0..0,
                    "[api] client_ca needs tls_cert and tls_key: client certificates come over TLS",
                    None,
                ));
            }
            None
        }
        (Some(cert), Some(key)) => {
            let files = shield_enforce::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: c.api.client_ca.clone(),
                client_ou: c.api.client_ou.clone(),
            };
            if let Err(e) = shield_enforce::server_config(&files) {
                errs.push(l.error_at(0..0, format!("[api] TLS: {e}"), None));
            }
            Some(files)
        }
        _ => {
            errs.push(l.error_at(
                0..0,
                "[api] tls_cert and tls_key go together: set both for HTTPS, or neither",
                None,
            ));
            None
        }
    };
    let listen = if c.api.listen.trim().is_empty() {
        None
    } else {
        match c.api.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(l.error_at(
                    0..0,
                    format!("[api] listen `{}` is not an address:port", c.api.listen),
                    Some(format!("e.g. {}", crate::config::DEFAULT_API)),
                ));
                None
            }
        }
    };
    if let Some(u) = &c.union {
        // The treaty and the member key are loaded and checked here, so a bad
        // one fails `shield check` instead of the start.
        let check = shield_union::UnionHandle::check(&shield_union::UnionConfig {
            name: u.member.clone(),
            key_path: u.key.clone(),
            treaty_path: u.treaty.clone(),
            listen: u.listen,
            db_path: c.store.path.clone(),
        });
        if let Err(e) = check {
            let hint = if u.treaty.exists() {
                "fix the file named above, or rejoin with `shield union join`"
            } else {
                "create it with `shield union init`, or join one with `shield union join`"
            };
            errs.push(l.error_at(
                0..0,
                format!("[union] member `{}`: {e}", u.member),
                Some(hint.into()),
            ));
        }
    }

    let notify = crate::notify::plan(l, &c.notify, &c.actions, c.webhook.as_ref(), &mut errs);

    if !errs.is_empty() {
        return Err(ConfigErrors(errs));
    }
    Ok(Plan {
        config_file: l.file_name(),
        store_path: c.store.path.clone(),
        keep: c.store.keep,
        engine: settings,
        pipelines,
        decider: {
            let d = Decider::new(Allowlist::new(allow), esc);
            if c.decisions.allow_ssh_sessions {
                d.with_ssh_sessions(decide::SshSessions::new(decide::sshd_ports()))
            } else {
                d
            }
        },
        firewall: FirewallPlan {
            backend: resolve_backend(c.firewall.backend),
            table: c.firewall.table.clone(),
            forward: c.firewall.forward,
            priority: c.firewall.priority,
            netns: c.firewall.netns.clone(),
            netlink: c.firewall.netlink,
        },
        api: ApiPlan {
            listen,
            socket: c.api.socket.clone(),
            limits: shield_enforce::ListenLimits {
                max_connections: c.api.max_connections,
                max_per_peer: c.api.max_connections_per_peer,
                header_timeout: c.api.header_timeout,
                trusted: proxies.clone(),
                ..Default::default()
            },
            trusted_proxies: proxies,
            client_header,
            token: c.api.token.as_ref().map(|t| t.get_ref().clone()),
            tls,
        },
        union: c.union.clone(),
        notify,
        lists,
        built,
    })
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// A literal path must exist; a glob's directory must exist.
fn check_path(p: &str) -> Option<String> {
    let is_glob = p.contains(['*', '?', '[']);
    let path = Path::new(p);
    if !path.is_absolute() {
        return Some(format!("path `{p}` is relative; write an absolute path"));
    }
    if is_glob {
        let dir = p[..p.find(['*', '?', '[']).unwrap_or(p.len())]
            .rsplit_once('/')
            .map(|x| x.0)
            .unwrap_or("/");
        let dir = if dir.is_empty() { "/" } else { dir };
        if !Path::new(dir).is_dir() {
            return Some(format!(
                "the directory `{dir}` of glob `{p}` does not exist"
            ));
        }
        None
    } else if !path.exists() {
        Some(format!("log file `{p}` does not exist"))
    } else {
        None
    }
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(cmd).is_file())
}

/// `auto` becomes nftables where `nft` exists, else ipset, else dry-run.
pub fn resolve_backend(b: Backend) -> Backend {
    match b {
        Backend::Auto if which("nft") => Backend::Nftables,
        Backend::Auto if which("ipset") && which("iptables") => Backend::Ipset,
        Backend::Auto => Backend::DryRun,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    /// Issue 22: `paths` on a journald source (and the like) was silently
    /// ignored; the typed source refuses it at its line with the fix.
    #[test]
    fn keys_of_another_source_kind_are_refused_with_their_line() {
        let text = "[[source]]\nname = \"j\"\ntype = \"journald\"\npaths = [\"/var/log/auth.log\"]\npacks = [\"sshd\"]\n\n\
                    [[source]]\nname = \"in\"\ntype = \"stdin\"\nlisten = \"127.0.0.1:5514\"\npacks = [\"sshd\"]\n";
        let e = parse(text, Some("c.toml".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("c.toml:4:9: source `j` (type = \"journald\"): `paths` applies to type = \"file\" only"),
            "{e}"
        );
        assert!(
            e.contains("hint: remove `paths`, or set type = \"file\""),
            "{e}"
        );
        let stdin = text.split_once("\n\n").unwrap().1;
        let e = parse(stdin, Some("c.toml".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("c.toml:4:10: source `in` (type = \"stdin\"): `listen` applies to type = \"syslog\" only"),
            "{e}"
        );
        // Without a type a source reads files, and takes their keys.
        let file =
            "[[source]]\nname = \"f\"\npaths = [\"/tmp\"]\nfrom_start = true\npacks = [\"sshd\"]\n";
        let l = parse(file, None).unwrap();
        assert!(matches!(
            &l.config.sources[0].get_ref().input,
            SourceInput::File { paths, from_start: true } if paths.len() == 1
        ));
        // Each kind's own keys still plan.
        let ok = "[[source]]\nname = \"s\"\ntype = \"syslog\"\nlisten = \"127.0.0.1:0\"\nprotocols = [\"udp\"]\npacks = [\"sshd\"]\n";
        assert!(plan(&parse(ok, None).unwrap()).is_ok());
    }

    #[test]
    fn bad_regex_is_located() {
        let text = "[[source]]\nname = \"app\"\ntype = \"stdin\"\n\n[[rule]]\nname = \"r\"\nservice = \"app\"\nregex = '(?P<host>\\S+'\n";
        let l = parse(text, Some("c.toml".into())).unwrap();
        let e = plan(&l).err().unwrap().to_string();
        assert!(
            e.starts_with("c.toml:8:9: rule `r`: the regex does not compile"),
            "{e}"
        );
    }

    #[test]
    fn unknown_pack_and_missing_file() {
        let text = "[[source]]\nname = \"x\"\npaths = [\"/nonexistent/auth.log\"]\npacks = [\"sshd\", \"ftpd\"]\n";
        let l = parse(text, Some("c.toml".into())).unwrap();
        let e = plan(&l).err().unwrap().to_string();
        assert!(
            e.contains("c.toml:3:10: log file `/nonexistent/auth.log` does not exist"),
            "{e}"
        );
        assert!(e.contains("c.toml:4:18: unknown rule pack `ftpd`"), "{e}");
    }

    #[test]
    fn scenario_bound_to_nothing_is_an_error() {
        let text = "[[source]]\nname = \"s\"\ntype = \"stdin\"\npacks = [\"sshd\"]\n\n[[scenario]]\nname = \"x\"\nrules = [\"nope\"]\ncapacity = 3\nleak = \"10s\"\nduration = \"1h\"\n";
        let l = parse(text, Some("c.toml".into())).unwrap();
        let e = plan(&l).err().unwrap().to_string();
        assert!(
            e.contains("c.toml:6:1: scenario `x` names rules that no source uses"),
            "{e}"
        );
    }

    #[test]
    fn example_config_plans_except_paths() {
        let text = include_str!("../../../examples/shield.toml")
            .replace("/var/log/auth.log", "/tmp")
            .replace("/var/log/nginx/*access.log", "/tmp/*.log");
        let l = parse(&text, Some("ex.toml".into())).unwrap();
        let p = plan(&l).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.pipelines.len(), 2);
        assert!(
            p.pipelines[1]
                .scenarios
                .iter()
                .any(|s| s.name == "myapp-login-bruteforce")
        );
    }
}
