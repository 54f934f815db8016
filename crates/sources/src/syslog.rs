//! The syslog listener: receives messages over UDP (one datagram, one
//! message) and TCP (RFC 6587 framing: octet counting `LEN SP MSG`, or one
//! message per `\n`, chosen per message) and hands `(peer, message bytes)` to
//! a callback. Messages are RFC 3164 or RFC 5424; [`parse`] splits their
//! header for whoever needs it: [`SyslogParts::to_program_line`] gives
//! Shield's own rules `tag[pid]: msg` (their time comes from the reader), and
//! [`SyslogParts::to_line`] rebuilds the classic `Mmm dd hh:mm:ss host tag: msg`
//! line for rule families written for log files (fail2ban, CrowdSec).
//!
//! Everything a peer sends is bounded: message size ([`SyslogSpec::max_message`],
//! longer ones skipped and counted), concurrent TCP connections, and idle
//! connections, which are closed. It does not decide who may send: bind to
//! loopback or a trusted interface, or firewall the port.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::SourceError;

/// Where and how to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogSpec {
    /// UDP address, e.g. `127.0.0.1:514`; port 0 picks a free port.
    pub udp: Option<SocketAddr>,
    /// TCP address.
    pub tcp: Option<SocketAddr>,
    /// Longest message accepted (default 64 KiB); longer ones are skipped and counted.
    pub max_message: usize,
    /// Concurrent TCP connections (default 256); more are refused and counted.
    pub max_connections: usize,
    /// Concurrent TCP connections from one address (default 16), so one
    /// sender cannot take every slot; more are refused and counted.
    pub max_per_peer: usize,
    /// A TCP connection silent for this long is closed (default 10 min).
    pub idle_timeout: Duration,
}

impl Default for SyslogSpec {
    fn default() -> Self {
        Self {
            udp: None,
            tcp: None,
            max_message: 64 * 1024,
            max_connections: 256,
            max_per_peer: 16,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// The callback: the peer and one message (without framing and without a
/// trailing `\n`, `\r` or NUL). Called from the listener's threads.
pub type OnMessage = Arc<dyn Fn(SocketAddr, &[u8]) + Send + Sync>;

/// Counters of a listener.
#[derive(Debug, Default)]
pub struct SyslogCounters {
    pub messages: AtomicU64,
    pub oversized: AtomicU64,
    pub framing_errors: AtomicU64,
    pub refused_connections: AtomicU64,
    pub idle_closed: AtomicU64,
}

/// How often the threads look at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// Receive buffer asked for the UDP socket (the kernel doubles it for bookkeeping).
const UDP_RCVBUF: usize = 16 << 20;

/// A running listener; [`SyslogListener::stop`] (or drop) ends its threads.
pub struct SyslogListener {
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    counters: Arc<SyslogCounters>,
}

impl std::fmt::Debug for SyslogListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogListener")
            .field("udp", &self.udp_addr)
            .field("tcp", &self.tcp_addr)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl SyslogListener {
    /// Binds the configured sockets and starts receiving.
    pub fn start(spec: &SyslogSpec, on_message: OnMessage) -> Result<Self, SourceError> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SyslogCounters::default());
        let mut me = Self {
            udp_addr: None,
            tcp_addr: None,
            stop,
            threads: Vec::new(),
            counters,
        };
        let max = spec.max_message.max(1);
        if let Some(addr) = spec.udp {
            let sock =
                UdpSocket::bind(addr).map_err(|source| SourceError::Bind { addr, source })?;
            sock.set_read_timeout(Some(TICK))
                .map_err(|source| io("setting a UDP timeout", source))?;
            // A flood arrives in bursts: the default receive buffer (~200
            // datagrams) overflows in the kernel, where nobody counts it.
            // Above net.core.rmem_max only as root (force); best effort.
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&sock, UDP_RCVBUF)
                .or_else(|_| rustix::net::sockopt::set_socket_recv_buffer_size(&sock, UDP_RCVBUF));
            me.udp_addr = sock.local_addr().ok();
            let (stop, counters, cb) = (me.stop.clone(), me.counters.clone(), on_message.clone());
            me.threads.push(std::thread::spawn(move || {
                udp_loop(&sock, max, &stop, &counters, &cb)
            }));
        }
        if let Some(addr) = spec.tcp {
            let l = TcpListener::bind(addr).map_err(|source| SourceError::Bind { addr, source })?;
            l.set_nonblocking(true)
                .map_err(|source| io("configuring the TCP listener", source))?;
            me.tcp_addr = l.local_addr().ok();
            let (stop, counters, cb) = (me.stop.clone(), me.counters.clone(), on_message);
            let spec = spec.clone();
            me.threads.push(std::thread::spawn(move || {
                tcp_accept_loop(&l, &spec, &stop, &counters, &cb)
            }));
        }
        Ok(me)
    }

    /// The bound UDP address (useful with port 0).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn counters(&self) -> &SyslogCounters {
        &self.counters
    }

    /// Stops receiving and waits for the threads (at most about 100 ms).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for SyslogListener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn io(what: &str, source: std::io::Error) -> SourceError {
    SourceError::Io {
        what: what.to_owned(),
        source,
    }
}

/// A message without trailing `\n`, `\r` or NUL.
fn trim_end(mut m: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | 0] = m {
        m = rest;
    }
    m
}

fn udp_loop(sock: &UdpSocket, max: usize, stop: &AtomicBool, c: &SyslogCounters, cb: &OnMessage) {
    // One byte more than allowed, to tell an oversized datagram from a full one.
    let mut buf = vec![0u8; max.saturating_add(1).min(65_536)];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, peer)) => {
                if n > max {
                    c.oversized.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let m = trim_end(&buf[..n]);
                if !m.is_empty() {
                    c.messages.fetch_add(1, Ordering::Relaxed);
                    cb(peer, m);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::debug!(error = %e, "syslog UDP receive failed");
                std::thread::sleep(TICK);
            }
        }
    }
}

fn tcp_accept_loop(
    l: &TcpListener,
    spec: &SyslogSpec,
    stop: &Arc<AtomicBool>,
    c: &Arc<SyslogCounters>,
    cb: &OnMessage,
) {
    let live = Arc::new(AtomicUsize::new(0));
    // Connections per canonical peer address; locked at accept and at close only.
    let per_peer: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Arc::default();
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, peer)) => {
                conns.retain(|h| !h.is_finished());
                let ip = peer.ip().to_canonical();
                let admitted = {
                    let mut m = per_peer.lock().unwrap_or_else(|e| e.into_inner());
                    let n = m.get(&ip).copied().unwrap_or(0);
                    if live.load(Ordering::Relaxed) >= spec.max_connections
                        || n >= spec.max_per_peer.max(1)
                    {
                        false
                    } else {
                        m.insert(ip, n + 1);
                        true
                    }
                };
                if !admitted {
                    c.refused_connections.fetch_add(1, Ordering::Relaxed);
                    drop(s);
                    continue;
                }
                live.fetch_add(1, Ordering::Relaxed);
                let (stop, c, cb, live, spec, per_peer) = (
                    stop.clone(),
                    c.clone(),
                    cb.clone(),
                    live.clone(),
                    spec.clone(),
                    per_peer.clone(),
                );
                conns.push(std::thread::spawn(move || {
                    tcp_conn(s, peer, &spec, &stop, &c, &cb);
                    live.fetch_sub(1, Ordering::Relaxed);
                    let mut m = per_peer.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(n) = m.get_mut(&ip) {
                        *n -= 1;
                        if *n == 0 {
                            m.remove(&ip);
                        }
                    }
                }));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                let mut fds = [rustix::event::PollFd::new(l, rustix::event::PollFlags::IN)];
                let ts = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: TICK.as_nanos() as i64,
                };
                let _ = rustix::event::poll(&mut fds, Some(&ts));
            }
            Err(e) => {
                tracing::debug!(error = %e, "syslog TCP accept failed");
                std::thread::sleep(TICK);
            }
        }
    }
    for h in conns {
        let _ = h.join();
    }
}

/// Splits a TCP byte stream into messages (RFC 6587).
#[derive(Debug)]
pub struct TcpFramer {
    buf: Vec<u8>,
    max: usize,
    /// Bytes of an oversized octet-counted message still to discard.
    discard: usize,
    /// Discarding an oversized newline-framed message up to its `\n`.
    discard_line: bool,
    pub oversized: u64,
    pub framing_errors: u64,
}

impl TcpFramer {
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: Vec::new(),
            max: max_message.max(1),
            discard: 0,
            discard_line: false,
            oversized: 0,
            framing_errors: 0,
        }
    }

    /// Feeds received bytes; calls `out` for every complete message.
    pub fn feed(&mut self, mut data: &[u8], out: &mut dyn FnMut(&[u8])) {
        if self.discard > 0 {
            let n = self.discard.min(data.len());
            self.discard -= n;
            data = &data[n..];
        }
        if self.discard_line {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.discard_line = false;
                    data = &data[i + 1..];
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            if rest.is_empty() {
                break;
            }
            if rest[0].is_ascii_digit() {
                // Octet counting: LEN SP MSG.
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                if digits == rest.len() {
                    if digits > 10 {
                        self.framing_errors += 1;
                        self.buf.clear();
                        self.discard_line = true;
                        return;
                    }
                    break; // length still arriving
                }
                if rest[digits] != b' ' || digits > 10 {
                    // Not a length: treat the line as newline-framed.
                    self.framing_errors += 1;
                    match self.take_line(pos, out) {
                        Some(p) => {
                            pos = p;
                            continue;
                        }
                        None => break,
                    }
                }
                let len: usize = std::str::from_utf8(&rest[..digits])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                let start = pos + digits + 1;
                if len > self.max {
                    self.oversized += 1;
                    let have = self.buf.len() - start;
                    if have >= len {
                        pos = start + len;
                        continue;
                    }
                    self.discard = len - have;
                    pos = self.buf.len();
                    break;
                }
                if self.buf.len() - start < len {
                    break;
                }
                let m = trim_end(&self.buf[start..start + len]);
                if !m.is_empty() {
                    out(m);
                }
                pos = start + len;
            } else {
                match self.take_line(pos, out) {
                    Some(p) => pos = p,
                    None => break,
                }
            }
        }
        self.buf.drain(..pos);
        // A newline-framed message with no end in sight.
        if self.buf.len() > self.max + 12 {
            self.oversized += 1;
            self.buf.clear();
            self.discard_line = true;
        }
    }

    /// A `\n`-framed message starting at `pos`; the position after it.
    fn take_line(&mut self, pos: usize, out: &mut dyn FnMut(&[u8])) -> Option<usize> {
        let i = memchr::memchr(b'\n', &self.buf[pos..])?;
        let m = trim_end(&self.buf[pos..pos + i]);
        if m.len() > self.max {
            self.oversized += 1;
        } else if !m.is_empty() {
            out(m);
        }
        Some(pos + i + 1)
    }
}

fn tcp_conn(
    mut s: TcpStream,
    peer: SocketAddr,
    spec: &SyslogSpec,
    stop: &AtomicBool,
    c: &SyslogCounters,
    cb: &OnMessage,
) {
    if s.set_nonblocking(false).is_err() || s.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    let mut framer = TcpFramer::new(spec.max_message);
    let mut buf = vec![0u8; 64 * 1024];
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                last = Instant::now();
                framer.feed(&buf[..n], &mut |m| {
                    c.messages.fetch_add(1, Ordering::Relaxed);
                    cb(peer, m);
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if last.elapsed() >= spec.idle_timeout {
                    c.idle_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            Err(_) => break,
        }
    }
    // A last newline-less message at connection close is complete.
    framer.feed(b"\n", &mut |m| {
        c.messages.fetch_add(1, Ordering::Relaxed);
        cb(peer, m);
    });
    c.oversized.fetch_add(framer.oversized, Ordering::Relaxed);
    c.framing_errors
        .fetch_add(framer.framing_errors, Ordering::Relaxed);
}

/// The header of a syslog message, split without copying.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyslogParts<'a> {
    /// `<PRI>`: facility * 8 + severity.
    pub pri: Option<u8>,
    /// RFC 5424 (`<PRI>1 ...`) rather than RFC 3164.
    pub rfc5424: bool,
    pub timestamp: Option<&'a [u8]>,
    pub hostname: Option<&'a [u8]>,
    /// The tag (3164) or APP-NAME (5424), without `[pid]`.
    pub app_name: Option<&'a [u8]>,
    pub procid: Option<&'a [u8]>,
    /// The free-form message.
    pub msg: &'a [u8],
}

fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', s) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn nil(t: &[u8]) -> Option<&[u8]> {
    (t != b"-" && !t.is_empty()).then_some(t)
}

/// Splits an RFC 3164 or RFC 5424 message. Never fails: what does not parse
/// ends up in `msg`.
pub fn parse(m: &[u8]) -> SyslogParts<'_> {
    let mut p = SyslogParts {
        msg: m,
        ..SyslogParts::default()
    };
    let mut rest = m;
    if let [b'<', tail @ ..] = m
        && let Some(end) = tail.iter().take(4).position(|&b| b == b'>')
        && end > 0
        && let Some(pri) = std::str::from_utf8(&tail[..end])
            .ok()
            .and_then(|s| s.parse::<u8>().ok())
            .filter(|&v| v <= 191)
    {
        p.pri = Some(pri);
        rest = &tail[end + 1..];
    }
    if let [b'1', b' ', tail @ ..] = rest {
        // RFC 5424: VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
        p.rfc5424 = true;
        let (ts, r) = split_token(tail);
        let (host, r) = split_token(r);
        let (app, r) = split_token(r);
        let (procid, r) = split_token(r);
        let (_msgid, r) = split_token(r);
        let r = skip_structured_data(r);
        p.timestamp = nil(ts);
        p.hostname = nil(host);
        p.app_name = nil(app);
        p.procid = nil(procid);
        p.msg = r.strip_prefix(b"\xef\xbb\xbf").unwrap_or(r);
        return p;
    }
    // RFC 3164: "Mmm dd hh:mm:ss HOST TAG[PID]: MSG" (the header is optional).
    p.msg = rest;
    if rest.len() >= 16
        && rest[3] == b' '
        && rest[6] == b' '
        && rest[9] == b':'
        && rest[12] == b':'
        && rest[15] == b' '
    {
        p.timestamp = Some(&rest[..15]);
        let (host, r) = split_token(&rest[16..]);
        p.hostname = nil(host);
        p.msg = r;
        let tag_end = r.iter().take(48).position(|&b| b == b':' || b == b' ');
        if let Some(i) = tag_end
            && r[i] == b':'
        {
            let tag = &r[..i];
            match memchr::memchr(b'[', tag) {
                Some(b) if tag.ends_with(b"]") => {
                    p.app_name = nil(&tag[..b]);
                    p.procid = nil(&tag[b + 1..tag.len() - 1]);
                }
                _ => p.app_name = nil(tag),
            }
            let body = &r[i + 1..];
            p.msg = body.strip_prefix(b" ").unwrap_or(body);
        }
    }
    p
}

/// Skips RFC 5424 STRUCTURED-DATA (`-` or `[id k="v"]...`) and the space after it.
fn skip_structured_data(r: &[u8]) -> &[u8] {
    if let Some(rest) = r.strip_prefix(b"-") {
        return rest.strip_prefix(b" ").unwrap_or(rest);
    }
    let mut i = 0;
    while i < r.len() && r[i] == b'[' {
        let mut in_quotes = false;
        i += 1;
        while i < r.len() {
            match r[i] {
                b'\\' if in_quotes => i += 1,
                b'"' => in_quotes = !in_quotes,
                b']' if !in_quotes => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    let rest = &r[i.min(r.len())..];
    rest.strip_prefix(b" ").unwrap_or(rest)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl SyslogParts<'_> {
    /// The message as the classic syslog file line `Mmm dd hh:mm:ss host
    /// tag[pid]: msg` (the form file rules are written for), into `out`
    /// (cleared first). An RFC 5424 timestamp is written in its own local
    /// time, without converting zones; a missing one becomes `Jan  1 00:00:00`.
    pub fn to_line(&self, out: &mut Vec<u8>) {
        out.clear();
        match self.timestamp {
            Some(ts) if !self.rfc5424 => out.extend_from_slice(ts),
            Some(ts) => push_rfc3339_as_3164(ts, out),
            None => out.extend_from_slice(b"Jan  1 00:00:00"),
        }
        out.push(b' ');
        out.extend_from_slice(self.hostname.unwrap_or(b"-"));
        if let Some(app) = self.app_name {
            out.push(b' ');
            out.extend_from_slice(app);
            if let Some(pid) = self.procid {
                out.push(b'[');
                out.extend_from_slice(pid);
                out.push(b']');
            }
            out.push(b':');
        }
        out.push(b' ');
        out.extend_from_slice(self.msg);
    }

    /// What Shield's own rules read of the message: `APP[PROCID]: MSG`
    /// (`MSG` alone without an app name) into `out` (cleared). No stamp or
    /// host is rendered: the reader gives the rules the time itself, and they
    /// key on the address in the message, not on the sending host.
    pub fn to_program_line(&self, out: &mut Vec<u8>) {
        out.clear();
        if let Some(app) = self.app_name {
            out.extend_from_slice(app);
            if let Some(pid) = self.procid {
                out.push(b'[');
                out.extend_from_slice(pid);
                out.push(b']');
            }
            out.extend_from_slice(b": ");
        }
        out.extend_from_slice(self.msg);
    }
}

fn push_rfc3339_as_3164(ts: &[u8], out: &mut Vec<u8>) {
    // 2003-10-11T22:14:15.003Z -> "Oct 11 22:14:15"
    let ok = ts.len() >= 19 && ts[4] == b'-' && ts[7] == b'-' && ts[10] == b'T';
    let month = std::str::from_utf8(ts.get(5..7).unwrap_or_default())
        .ok()
        .and_then(|m| m.parse::<usize>().ok());
    match (ok, month) {
        (true, Some(m @ 1..=12)) => {
            out.extend_from_slice(MONTHS[m - 1].as_bytes());
            out.push(b' ');
            if ts[8] == b'0' {
                out.push(b' ');
                out.push(ts[9]);
            } else {
                out.extend_from_slice(&ts[8..10]);
            }
            out.push(b' ');
            out.extend_from_slice(&ts[11..19]);
        }
        _ => out.extend_from_slice(b"Jan  1 00:00:00"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::IpAddr;
    use std::sync::Mutex;

    fn frames(chunks: &[&[u8]], max: usize) -> (Vec<Vec<u8>>, TcpFramer) {
        let mut f = TcpFramer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut |m| out.push(m.to_vec()));
        }
        (out, f)
    }

    #[test]
    fn octet_counting_and_newline_framing_mix_and_split_anywhere() {
        let stream: &[u8] = b"11 <13>hello 1\n<13>line two\n12 <13>hello  2";
        let (whole, _) = frames(&[stream], 1024);
        assert_eq!(
            whole,
            vec![
                b"<13>hello 1".to_vec(),
                b"<13>line two".to_vec(),
                b"<13>hello  2".to_vec()
            ]
        );
        for cut in 0..stream.len() {
            let (split, _) = frames(&[&stream[..cut], &stream[cut..]], 1024);
            assert_eq!(split, whole, "cut at {cut}");
        }
    }

    #[test]
    fn oversized_frames_are_skipped_and_counted() {
        let mut big = b"100 ".to_vec();
        big.extend([b'x'; 100]);
        big.extend(b"5 <13>a");
        let (out, f) = frames(&[&big[..50], &big[50..]], 10);
        assert_eq!(out, vec![b"<13>a".to_vec()]);
        assert_eq!(f.oversized, 1);
        let mut line = vec![b'y'; 50];
        line.extend(b"\n<13>b\n");
        let (out, f) = frames(&[&line[..20], &line[20..]], 10);
        assert_eq!(out, vec![b"<13>b".to_vec()]);
        assert_eq!(f.oversized, 1);
    }

    #[test]
    fn parses_rfc3164_and_rebuilds_the_file_line() {
        let p = parse(b"<38>Nov  3 14:02:01 web1 sshd[4242]: Failed password for root from 203.0.113.7 port 22 ssh2");
        assert_eq!(p.pri, Some(38));
        assert!(!p.rfc5424);
        assert_eq!(p.timestamp, Some(&b"Nov  3 14:02:01"[..]));
        assert_eq!(p.hostname, Some(&b"web1"[..]));
        assert_eq!(p.app_name, Some(&b"sshd"[..]));
        assert_eq!(p.procid, Some(&b"4242"[..]));
        assert_eq!(
            p.msg,
            b"Failed password for root from 203.0.113.7 port 22 ssh2"
        );
        let mut line = Vec::new();
        p.to_line(&mut line);
        assert_eq!(line, b"Nov  3 14:02:01 web1 sshd[4242]: Failed password for root from 203.0.113.7 port 22 ssh2");
        p.to_program_line(&mut line);
        assert_eq!(
            line,
            b"sshd[4242]: Failed password for root from 203.0.113.7 port 22 ssh2"
        );
    }

    #[test]
    fn parses_rfc5424_with_structured_data() {
        let p = parse(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventID=\"1]011\"] An application event");
        assert_eq!(p.pri, Some(165));
        assert!(p.rfc5424);
        assert_eq!(p.hostname, Some(&b"mymachine.example.com"[..]));
        assert_eq!(p.app_name, Some(&b"evntslog"[..]));
        assert_eq!(p.procid, None);
        assert_eq!(p.msg, b"An application event");
        let mut line = Vec::new();
        p.to_line(&mut line);
        assert_eq!(
            line,
            b"Oct 11 22:14:15 mymachine.example.com evntslog: An application event"
        );
        let p = parse(b"<34>1 2026-01-05T01:02:03+01:00 h sshd 99 - - \xef\xbb\xbfInvalid user x");
        assert_eq!(p.msg, b"Invalid user x");
        p.to_line(&mut line);
        assert_eq!(line, b"Jan  5 01:02:03 h sshd[99]: Invalid user x");
        p.to_program_line(&mut line);
        assert_eq!(line, b"sshd[99]: Invalid user x");
    }

    #[test]
    fn garbage_never_panics_and_lands_in_msg() {
        for m in [
            &b""[..],
            b"<",
            b"<999>x",
            b"<12",
            b"<1>1 ",
            b"<1>1 [unterminated",
            b"\xff\xfe",
            b"Nov  3 14:02:01",
        ] {
            let p = parse(m);
            let mut line = Vec::new();
            p.to_line(&mut line);
        }
        assert_eq!(parse(b"<999>x").pri, None);
        assert_eq!(parse(b"no header").msg, b"no header");
    }

    #[test]
    fn tcp_connections_are_capped_per_peer_and_others_still_get_in() {
        let spec = SyslogSpec {
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            max_per_peer: 3,
            ..SyslogSpec::default()
        };
        let got = Arc::new(Mutex::new(Vec::<(SocketAddr, Vec<u8>)>::new()));
        let cb: OnMessage = {
            let got = got.clone();
            Arc::new(move |peer, m: &[u8]| got.lock().unwrap().push((peer, m.to_vec())))
        };
        let l = SyslogListener::start(&spec, cb).unwrap();
        let to = l.tcp_addr().unwrap();
        let from = |a: [u8; 4]| {
            let s = rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::STREAM,
                None,
            )
            .unwrap();
            rustix::net::bind(&s, &SocketAddr::from((a, 0))).unwrap();
            rustix::net::connect(&s, &to).unwrap();
            TcpStream::from(s)
        };
        // Five connections from one address: three are served, two closed at once.
        let mut hog: Vec<TcpStream> = (0..5).map(|_| from([127, 0, 0, 7])).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while l.counters().refused_connections.load(Ordering::Relaxed) < 2 {
            assert!(
                Instant::now() < deadline,
                "the excess connections were never refused"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(l.counters().refused_connections.load(Ordering::Relaxed), 2);
        // Another address still gets in and is read.
        let mut other = from([127, 0, 0, 8]);
        other
            .write_all(b"<13>Dec  7 10:00:00 h app: from another sender\n")
            .unwrap();
        for s in &mut hog {
            let _ = s.write_all(b"<13>Dec  7 10:00:00 h app: hog\n");
        }
        drop(other);
        drop(hog);
        while !got
            .lock()
            .unwrap()
            .iter()
            .any(|(p, _)| p.ip() == IpAddr::from([127, 0, 0, 8]))
        {
            assert!(Instant::now() < deadline, "the other sender was not read");
            std::thread::sleep(Duration::from_millis(20));
        }
        let hogs = got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ip() == IpAddr::from([127, 0, 0, 7]))
            .count();
        assert!(hogs <= 3, "{hogs} messages from refused connections");
        l.stop();
    }
}
