//! Importing fail2ban jails: `jail.conf`, `jail.d/*.conf`, `jail.local`,
//! `jail.d/*.local` (with `paths-*.conf` includes, `[DEFAULT]` and `%(var)s`
//! interpolation) into [`JailSpec`]s, plus a list of what could not be carried
//! over. It owns the jail options only; filters are loaded by `filter.rs`.

use std::path::Path;

use crate::LoadError;
use crate::filter::FilterRef;
use crate::ini::{Config, layered};

/// `bantime.increment`: repeat offenders get longer bans.
#[derive(Clone, Debug, PartialEq)]
pub struct Increment {
    /// `bantime.factor` (default 1).
    pub factor: f64,
    /// `bantime.multipliers` (e.g. `1 2 4 8 16 32 64`), if set; else the default formula applies.
    pub multipliers: Option<Vec<u64>>,
    /// `bantime.maxtime` in seconds, if set.
    pub maxtime_s: Option<u64>,
    /// `bantime.rndtime` in seconds, if set.
    pub rndtime_s: Option<u64>,
    /// `bantime.overalljails`: count offences across jails.
    pub overalljails: bool,
}

/// One fail2ban jail, as Shield can run it.
#[derive(Clone, Debug, PartialEq)]
pub struct JailSpec {
    pub name: String,
    pub filter: FilterRef,
    pub logpath: Vec<String>,
    pub maxretry: u32,
    pub findtime_s: u64,
    /// Seconds; `u64::MAX` for fail2ban's permanent ban (`bantime = -1`).
    pub bantime_s: u64,
    pub bantime_increment: Option<Increment>,
    pub enabled: bool,
    pub backend: String,
    pub ignoreip: Vec<String>,
    /// `journalmatch` set on the jail itself (the filter's is the default).
    pub journalmatch: Option<String>,
    /// `port` (`ssh`, `http,https`, `0:65535`), if set.
    pub port: Option<String>,
}

/// fail2ban's `str2sec`: `600`, `10m`, `1h30m`, `1d 12h`, `1w`, `1mo`, `1y`, `-1`.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let mut total = 0f64;
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].to_ascii_lowercase();
        rest = &rest[unit_len..];
        let mul = match unit.as_str() {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "wk" | "week" | "weeks" => 7.0 * 86400.0,
            "mo" | "mon" | "month" | "months" => 30.4375 * 86400.0,
            "y" | "yr" | "year" | "years" => 365.25 * 86400.0,
            _ => return None,
        };
        total += n * mul;
        any = true;
    }
    any.then_some(total as i64)
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "1" | "on" | "enabled"
    )
}

/// Options Shield carries over; anything else set in a jail is reported.
const KNOWN: &[&str] = &[
    "enabled",
    "filter",
    "logpath",
    "maxretry",
    "findtime",
    "bantime",
    "backend",
    "ignoreip",
    "port",
    "protocol",
    "bantime.increment",
    "bantime.factor",
    "bantime.multipliers",
    "bantime.maxtime",
    "bantime.rndtime",
    "bantime.overalljails",
    "mode",
    "logencoding",
    "usedns",
    "journalmatch",
    "chain",
    "banaction",
    "banaction_allports",
    "action",
    "maxmatches",
    "ignoreself",
    "logtimezone",
    "skip_if_nologs",
    "systemd_if_nologs",
];

/// Reads `etc_fail2ban/jail.{conf,local}` and `jail.d/`. Returns the jails
/// (enabled or not) and one line per thing that could not be carried over.
pub fn import_jails(etc_fail2ban: &Path) -> Result<(Vec<JailSpec>, Vec<String>), LoadError> {
    let files = layered(etc_fail2ban, "jail");
    if !files.iter().any(|f| f.is_file()) && !etc_fail2ban.join("jail.local").is_file() {
        return Err(LoadError::NotFound {
            name: "jail".into(),
            dir: etc_fail2ban.to_path_buf(),
        });
    }
    let cfg = Config::read(&files)?;
    let mut jails = Vec::new();
    let mut notes = Vec::new();
    for (name, sec) in &cfg.sections {
        if name == "INCLUDES" || name == "DEFAULT" || name.contains('?') {
            continue;
        }
        let get = |o: &str| cfg.get(name, o, &[]);
        let enabled = get("enabled")?.is_some_and(|v| truthy(&v));
        let filter_s = get("filter")?.unwrap_or_else(|| name.clone());
        let filter: FilterRef = filter_s.parse()?;
        let dur = |o: &str, default: i64| -> Result<i64, LoadError> {
            match get(o)? {
                None => Ok(default),
                Some(v) => parse_duration(&v).ok_or_else(|| LoadError::Value {
                    what: format!("[{name}] {o}"),
                    reason: format!("{v:?} is not a duration like 600, 10m or 1h30m"),
                }),
            }
        };
        let maxretry = match get("maxretry")? {
            None => 5,
            Some(v) => v.trim().parse::<u32>().map_err(|_| LoadError::Value {
                what: format!("[{name}] maxretry"),
                reason: format!("{v:?} is not a whole number"),
            })?,
        };
        let findtime = dur("findtime", 600)?;
        let bantime = dur("bantime", 600)?;
        let bantime_s = if bantime < 0 {
            u64::MAX
        } else {
            bantime as u64
        };
        let increment = if get("bantime.increment")?.is_some_and(|v| truthy(&v)) {
            let factor = get("bantime.factor")?
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            let multipliers = get("bantime.multipliers")?
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|x| parse_duration(x).map(|n| n.max(0) as u64))
                        .collect()
                });
            let maxtime_s = get("bantime.maxtime")?
                .and_then(|v| parse_duration(&v))
                .map(|n| n.max(0) as u64);
            let rndtime_s = get("bantime.rndtime")?
                .and_then(|v| parse_duration(&v))
                .map(|n| n.max(0) as u64);
            let overalljails = get("bantime.overalljails")?.is_some_and(|v| truthy(&v));
            if enabled && get("bantime.formula")?.is_some() && multipliers.is_none() {
                notes.push(format!("[{name}] bantime.formula: Python formulas are not run; Shield doubles the ban per repeat (factor {factor})"));
            }
            Some(Increment {
                factor,
                multipliers,
                maxtime_s,
                rndtime_s,
                overalljails,
            })
        } else {
            None
        };
        let logpath: Vec<String> = get("logpath")?
            .map(|v| {
                v.split('\n')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let backend = get("backend")?
            .unwrap_or_else(|| "auto".into())
            .trim()
            .to_string();
        let ignoreip: Vec<String> = get("ignoreip")?
            .map(|v| {
                v.split([' ', ',', '\n'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if enabled {
            for ip in &ignoreip {
                if ip.starts_with("file:") {
                    notes.push(format!("[{name}] ignoreip {ip}: file lists are not read; add the addresses to Shield's allowlist"));
                }
            }
            for (k, _) in &sec.opts {
                if !KNOWN.contains(&k.as_str()) && !k.starts_with("bantime.") && !k.starts_with('_')
                {
                    notes.push(format!(
                        "[{name}] {k}: not carried over (Shield has no equivalent)"
                    ));
                }
            }
            if let Some(a) = sec.get("action") {
                notes.push(format!(
                    "[{name}] action = {}: fail2ban actions are not run; Shield bans through its own layers (nftables sets, HTTP gate)",
                    a.lines().next().unwrap_or("").trim()
                ));
            }
            if let Some(c) = get("ignorecommand")?.filter(|c| !c.trim().is_empty()) {
                notes.push(format!(
                    "[{name}] ignorecommand = {c}: commands are not run; use Shield's allowlist"
                ));
            }
        }
        let journalmatch = get("journalmatch")?
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|v| !v.is_empty());
        let port = get("port")?
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        jails.push(JailSpec {
            name: name.clone(),
            filter,
            logpath,
            maxretry,
            findtime_s: findtime.max(0) as u64,
            bantime_s,
            bantime_increment: increment,
            enabled,
            backend,
            ignoreip,
            journalmatch,
            port,
        });
    }
    Ok((jails, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Some(600));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("1d 12h"), Some(129_600));
        assert_eq!(parse_duration("1w"), Some(604_800));
        assert_eq!(parse_duration("-1"), Some(-1));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn jails_from_a_tree() {
        let dir = std::env::temp_dir().join(format!("shield-f2b-jail-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("jail.d")).unwrap();
        std::fs::write(
            dir.join("paths-common.conf"),
            "[DEFAULT]\nsshd_log = /var/log/auth.log\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("jail.conf"),
            "[INCLUDES]\nbefore = paths-common.conf\n[DEFAULT]\nmaxretry = 5\nfindtime = 10m\nbantime = 10m\n\
             mode = normal\nfilter = %(__name__)s[mode=%(mode)s]\nignoreip = 127.0.0.1/8 ::1\n\
             [sshd]\nport = ssh\nlogpath = %(sshd_log)s\n[nginx-http-auth]\nlogpath = /var/log/nginx/error.log\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("jail.d/defaults.local"),
            "[sshd]\nenabled = true\nmode = aggressive\nbantime = 1h\nbantime.increment = true\n\
             bantime.maxtime = 1w\naction = iptables[name=x]\nweird = 1\n",
        )
        .unwrap();
        let (jails, notes) = import_jails(&dir).unwrap();
        let ssh = jails.iter().find(|j| j.name == "sshd").unwrap();
        assert!(ssh.enabled);
        assert_eq!(ssh.filter.name_or_path, "sshd");
        assert_eq!(ssh.filter.mode.as_deref(), Some("aggressive"));
        assert_eq!(ssh.logpath, vec!["/var/log/auth.log".to_string()]);
        assert_eq!(
            (ssh.maxretry, ssh.findtime_s, ssh.bantime_s),
            (5, 600, 3600)
        );
        assert_eq!(
            ssh.bantime_increment.as_ref().unwrap().maxtime_s,
            Some(604_800)
        );
        assert_eq!(
            ssh.ignoreip,
            vec!["127.0.0.1/8".to_string(), "::1".to_string()]
        );
        assert!(notes.iter().any(|n| n.contains("weird")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("action")), "{notes:?}");
        let ng = jails.iter().find(|j| j.name == "nginx-http-auth").unwrap();
        assert!(!ng.enabled);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
