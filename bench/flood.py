#!/usr/bin/env python3
"""The live daemon under a flood (issue 26): lag vs offered rate for Shield, fail2ban and CrowdSec.

Owns the flood measurement: a writer appending sshd lines to a file a freshly started daemon
tails, at a controlled rate, for STEP_SECS per step, and the lag read while it runs; the
line -> drop latency under 500k lines/s of noise; the results (bench/results/flood.json and the
chart bench/results/flood.png, or flood.svg when matplotlib is missing). It installs nothing and
does not build Shield (see bench/run.sh); BENCHMARKS.md is written by hand from the JSON.

How lag is measured:
- Shield: exactly, from its counters. The writer records (time, lines written so far) after
  every write; a sampler reads `lines` of the source from `GET /api/status` on the daemon's
  unix socket every 50 ms; the lag at a sample is now minus the time the oldest unread line was
  written (0 when everything written was read). Shield's own `lag_seconds` is recorded beside it.
- Every tool: markers. Once a second (MARKERS_PER_S) the writer appends 8 password failures
  from a fresh address (203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24) in one write; a
  marker's lag is the time until the tool decided it: Shield's nftables set element (from
  `nft monitor` inside the daemon's network namespace), fail2ban's `Ban` log line
  (`fail2ban-server -f`, a private config dir, socket and log; `dummy` action), CrowdSec's
  decision row in its sqlite database (private config as in bench/sidebyside.py, file
  acquisition in tail mode, no central API), polled every 50 ms.
A step passes when every marker was decided within 1 s and (Shield) the counter lag never
exceeded 1 s. A tool's ladder stops at its first failed step (it has fallen behind).

Noise is benign sshd traffic (accepted keys, session open/close, disconnects) from 10.0.0.0/8,
stamped with the current time (fail2ban and CrowdSec ignore old lines).

Knobs (environment): STEP_SECS (10), SHIELD_RATES, F2B_RATES, CS_RATES (comma lists of
lines/s), DROP_RATE (500000), DROP_MARKERS_PER_S (20), SYSLOG_RATES, TOOLS (shield,fail2ban,
crowdsec,syslog,drop), BENCH_WORK (/var/tmp/shield-flood), SHIELD_BIN, OUT (the JSON written,
bench/results/flood.json), MERGE (comma list of earlier flood JSON files whose results are added).
Run as root (network namespace, nftables): `sudo python3 bench/flood.py`.
"""

import sys

sys.dont_write_bytecode = True

import datetime
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = Path(os.environ.get("BENCH_WORK", "/var/tmp/shield-flood"))
SHIELD = os.environ.get("SHIELD_BIN") or str(ROOT / "target" / "release" / "shield")
STEP_SECS = float(os.environ.get("STEP_SECS", "10"))


def rates(var, default):
    return [int(float(x)) for x in os.environ.get(var, default).split(",") if x]


SHIELD_RATES = rates("SHIELD_RATES", "100000,250000,500000,1000000,2000000,3000000")
F2B_RATES = rates("F2B_RATES", "1000,2000,3000,4000,5000,7500,10000,25000")
CS_RATES = rates("CS_RATES", "500,1000,1500,2000,2500,5000,10000")
SYSLOG_RATES = rates("SYSLOG_RATES", "50000,100000,250000,500000")
JOURNAL_RATES = rates("JOURNAL_RATES", "25000,50000,100000,250000,500000")
DROP_RATE = int(os.environ.get("DROP_RATE", "500000"))
DROP_MARKERS_PER_S = float(os.environ.get("DROP_MARKERS_PER_S", "20"))
TOOLS = os.environ.get("TOOLS", "shield,journald,syslog,drop,fail2ban,crowdsec").split(",")
MARKER_FAILS = 8
LAG_OK = 1.0
GRACE = 10.0  # seconds after a step for markers to be decided before they count as missed
NETNS = f"shield-flood-{os.getpid()}"


class BenchError(Exception):
    """A step failed; the message says which and what to check."""


def log(msg):
    print(f"[flood {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stamp(t):
    return time.strftime("%b %e %H:%M:%S", time.localtime(t)).encode()


# ---------------------------------------------------------------- the writer

def noise_block(n):
    """n benign sshd lines with a 15-byte stamp placeholder (b'@' * 15)."""
    out = []
    ph = b"@" * 15
    for i in range(n):
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}".encode()
        pid = 20000 + i % 9999
        k = i % 4
        if k == 0:
            out.append(b"%s flood sshd[%d]: Accepted publickey for deploy from %s port %d ssh2\n" % (ph, pid, ip, 40000 + i % 20000))
        elif k == 1:
            out.append(b"%s flood sshd[%d]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)\n" % (ph, pid))
        elif k == 2:
            out.append(b"%s flood sshd[%d]: Received disconnect from %s port %d:11: disconnected by user\n" % (ph, pid, ip, 40000 + i % 20000))
        else:
            out.append(b"%s flood sshd[%d]: Disconnected from user deploy %s port %d\n" % (ph, pid, ip, 40000 + i % 20000))
    return b"".join(out)


class Markers:
    """Fresh attacker addresses, one per marker, never repeated in a run."""

    def __init__(self):
        self.n = 0

    def next(self):
        nets = ["203.0.113", "198.51.100", "192.0.2"]
        i = self.n
        self.n += 1
        return f"{nets[(i // 250) % 3]}.{1 + i % 250}" if i < 750 else f"100.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}"


def marker_lines(ip, t):
    s = stamp(t)
    return b"".join(b"%s flood sshd[%d]: Failed password for root from %s port %d ssh2\n" % (s, 3000 + k, ip.encode(), 50000 + k)
                    for k in range(MARKER_FAILS))


def write_flood(path, rate, secs, markers, markers_per_s, sink=None):
    """Appends noise at `rate` lines/s for `secs` (plus markers) to `path`, or hands each chunk to
    `sink(bytes, lines)`. Returns (timeline [(t, lines)], marker list [(ip, t_written)], offered lines/s)."""
    tick = 0.01
    per_tick = max(1, int(round(rate * tick)))
    block = noise_block(per_tick)
    f = None if sink else open(path, "ab", buffering=0)
    timeline, written = [], []
    total = 0
    start = time.time()
    cur_sec, cur_block = None, None
    next_marker = start + 0.5 / markers_per_s if markers_per_s else float("inf")
    k = 0
    try:
        while True:
            due = start + k * tick
            now = time.time()
            if due > start + secs:
                break
            if now < due:
                time.sleep(due - now)
                now = time.time()
            sec = int(now)
            if sec != cur_sec:
                cur_sec, cur_block = sec, block.replace(b"@" * 15, stamp(now))
            t = time.time()
            if sink:
                sink(cur_block, per_tick)
            else:
                f.write(cur_block)
            total += per_tick
            timeline.append((t, total))
            if now >= next_marker:
                ip = markers.next()
                data = marker_lines(ip, now)
                t = time.time()
                if sink:
                    sink(data, MARKER_FAILS)
                else:
                    f.write(data)
                total += MARKER_FAILS
                timeline.append((t, total))
                written.append((ip, t))
                next_marker += 1.0 / markers_per_s
            k += 1
    finally:
        if f:
            f.close()
    elapsed = time.time() - start
    return timeline, written, total / elapsed


def counter_lag(timeline, samples):
    """Max lag from (t, lines read) samples against the writer's (t, lines written) timeline."""
    import bisect
    ns = [n for _, n in timeline]
    worst = 0.0
    for t, read in samples:
        i = bisect.bisect_right(ns, read)  # first write whose cumulative count exceeds `read`
        if i >= len(timeline):
            continue
        t_oldest = timeline[i][0]
        if t_oldest < t:
            worst = max(worst, t - t_oldest)
    return worst


def marker_result(written, decided):
    lags = []
    missed = 0
    for ip, t in written:
        d = decided.get(ip)
        if d is None:
            missed += 1
        else:
            lags.append(max(0.0, d - t))
    return lags, missed


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def wait_until(cond, timeout, every=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(every)
    return cond()


def rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- Shield

def netns_up():
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)


def netns_down():
    subprocess.run(["ip", "netns", "del", NETNS], check=False)


def unix_get(sock, path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(sock))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    buf = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2:]
        body = out
    return json.loads(body)


SHIELD_SCEN = """
[engine]
no_default_scenarios = true

[[scenario]]
name = "ssh-flood-marker"
rules = ["sshd*"]
capacity = 4
leak = "1h"
decision = "ban"
duration = "1h"
"""


def shield_config(d, source):
    return f"""
[store]
path = "{d}/shield.db"

[firewall]
backend = "nftables"

[api]
listen = ""
socket = "{d}/shield.sock"

[decisions]
allow_own_addresses = true

[decisions.escalation]
enabled = false
{SHIELD_SCEN}
{source}
"""


class ShieldRun:
    """A fresh `shield run` inside the bench's network namespace, an `nft monitor` beside it,
    and a sampler of its source status."""

    def __init__(self, tag, source_toml):
        self.d = WORK / tag
        if self.d.exists():
            shutil.rmtree(self.d)
        self.d.mkdir(parents=True)
        self.log = self.d / "flood.log"
        self.log.write_bytes(b"")
        cfg = self.d / "shield.toml"
        cfg.write_text(shield_config(self.d, source_toml.replace("@LOG@", str(self.log))))
        self.sock = self.d / "shield.sock"
        self.proc = subprocess.Popen(["ip", "netns", "exec", NETNS, SHIELD, "--config", str(cfg), "run"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.d / "daemon.log", "wb"),
                                     env=dict(os.environ, SHIELD_LOG="info"))
        if not wait_until(lambda: self.sock.exists() and self.status() is not None, 30, 0.1):
            stop(self.proc)
            raise BenchError(f"{tag}: shield run did not come up; see {self.d}/daemon.log")
        self.decided = {}
        self.mon = subprocess.Popen(["ip", "netns", "exec", NETNS, "nft", "monitor", "elements"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        threading.Thread(target=self._monitor, daemon=True).start()
        self.samples = []
        self.running = True
        threading.Thread(target=self._sample, daemon=True).start()
        time.sleep(0.3)

    def status(self):
        try:
            return unix_get(self.sock, "/api/status")
        except (OSError, ValueError):
            return None

    def source(self):
        s = self.status()
        if not s:
            return None
        return next((x for x in s["sources"] if x["name"] == "flood"), None)

    def _monitor(self):
        rx = re.compile(r"add element .*\{ ([0-9.]+)")
        for line in self.mon.stdout:
            t = time.time()
            m = rx.search(line)
            if m:
                self.decided.setdefault(m.group(1), t)

    def _sample(self):
        while self.running:
            src = self.source()
            if src:
                self.samples.append((time.time(), src["lines"], src.get("lag_seconds", 0.0), src.get("bytes_behind", 0)))
            time.sleep(0.05)

    def close(self):
        self.running = False
        rss = rss_mb(self.daemon_pid())
        stop(self.proc)
        stop(self.mon)
        return rss

    def daemon_pid(self):
        # `ip netns exec` execs the binary: the child's pid is shield's.
        return self.proc.pid


def shield_step(kind, rate, markers, markers_per_s=1.0, tag=None):
    tag = tag or f"shield-{kind}-{rate}"
    if kind == "file":
        src = '[[source]]\nname = "flood"\npaths = ["@LOG@"]\npacks = ["sshd"]\n'
    elif kind == "syslog":
        port = 20000 + os.getpid() % 20000
        src = f'[[source]]\nname = "flood"\ntype = "syslog"\nlisten = "127.0.0.1:{port}"\nprotocols = ["udp"]\npacks = ["sshd"]\n'
    elif kind == "journald":
        jdir = WORK / f"{tag}-journal"
        shutil.rmtree(jdir, ignore_errors=True)
        jdir.mkdir(parents=True)
        jr = subprocess.Popen([JOURNAL_REMOTE, "-o", str(jdir / "flood.journal"), "-"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=open(WORK / f"{tag}-journal-remote.err", "wb"))
        jr.stdin.write(export_entries(b"@@@@@@@@@@@@@@@ flood sshd[1]: Server listening on 0.0.0.0 port 22.\n", time.time()))
        jr.stdin.flush()
        if not wait_until(lambda: (jdir / "flood.journal").exists(), 10):
            raise BenchError(f"systemd-journal-remote wrote no journal in {jdir}")
        src = (f'[[source]]\nname = "flood"\ntype = "journald"\njournal_directory = "{jdir}"\n'
               'journal_match = ["SYSLOG_IDENTIFIER=sshd"]\npacks = ["sshd"]\n')
    run = ShieldRun(tag, src)
    sink = None
    if kind == "journald":
        templates = {}

        def sink(data, _n):
            t = time.time()
            e = templates.get(id(data))
            if e is None or e[0] is not data:
                e = templates[id(data)] = (data, export_entries(data, None))
            jr.stdin.write(e[1].replace(b"@" * 16, b"%d" % int(t * 1e6)))
        time.sleep(1.5)
    if kind == "syslog":
        udp = [None]

        def sink(data, _n):
            if udp[0] is None:
                udp[0] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                udp[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
            send = udp[0].sendto
            # `ip netns exec` puts the listener in the namespace: send from inside it.
            for line in data.split(b"\n"):
                if line:
                    send(b"<38>" + line, ("127.0.0.1", port))
        # Datagrams must be sent inside the namespace: this process enters it.
        enter_netns()
    udp_before = udp_rcvbuf_errors()
    try:
        timeline, written, offered = write_flood(run.log, rate, STEP_SECS, markers, markers_per_s, sink)
        total = timeline[-1][1]
        end_write = time.time()
        caught = wait_until(lambda: (run.source() or {}).get("lines", 0) >= total
                            and all(ip in run.decided for ip, _ in written), GRACE)
        src = run.source() or {}
        lag_counter = counter_lag(timeline, [(t, n) for t, n, _, _ in run.samples])
        if not caught:
            lag_counter = max(lag_counter, time.time() - end_write)
        lags, missed = marker_result(written, run.decided)
        res = {
            "tool": "shield", "source": kind, "offered_lines_per_s": round(offered), "target_lines_per_s": rate,
            "lines_written": total, "lines_read": src.get("lines", 0),
            "lines_dropped_by_source": dropped_of(src),
            "udp_dropped_by_kernel": udp_rcvbuf_errors() - udp_before,
            "counter_lag_max_s": round(lag_counter, 3),
            "shield_lag_peak_s": round(src.get("lag_peak_seconds", 0.0), 3),
            "marker_lag_p50_s": pct(lags, 50), "marker_lag_p99_s": pct(lags, 99),
            "marker_lag_max_s": max(lags) if lags else None,
            "markers": len(written), "markers_missed": missed,
            "marker_lags_s": [round(x, 4) for x in lags],
        }
    finally:
        if kind == "syslog":
            leave_netns()
        if kind == "journald":
            jr.stdin.close()
            stop(jr)
            shutil.rmtree(jdir, ignore_errors=True)
        res_rss = run.close()
    res["peak_rss_mb"] = res_rss
    res["ok"] = (res["markers_missed"] == 0 and (res["marker_lag_max_s"] or 0) < LAG_OK
                 and res["counter_lag_max_s"] < LAG_OK and res["lines_read"] >= res["lines_written"])
    shutil.rmtree(run.d, ignore_errors=True)
    return res


JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"


def export_entries(data, t):
    """Syslog-style lines as journal export entries (SYSLOG_IDENTIFIER, _PID, MESSAGE); the
    realtime stamp is `t`, or a 16-byte placeholder (b'@' * 16) filled in at write time."""
    ts = b"@" * 16 if t is None else b"%d" % int(t * 1e6)  # 16 digits until 2286
    # journalctl --follow shows the current boot only: the entries carry its id.
    boot = open("/proc/sys/kernel/random/boot_id").read().strip().replace("-", "").encode()
    out = []
    for line in data.split(b"\n"):
        if not line:
            continue
        head, _, msg = line[16:].partition(b": ")
        ident, _, pid = head.split(b" ", 1)[1].partition(b"[")
        out.append(b"__REALTIME_TIMESTAMP=%s\n__MONOTONIC_TIMESTAMP=%s\n_BOOT_ID=%s\nSYSLOG_IDENTIFIER=%s\n_PID=%s\n"
                   b"MESSAGE=%s\n\n" % (ts, ts, boot, ident, pid.rstrip(b"]"), msg))
    return b"".join(out)


def udp_rcvbuf_errors():
    """UDP datagrams the kernel dropped in the namespace for a full receive buffer."""
    out = subprocess.run(["ip", "netns", "exec", NETNS, "cat", "/proc/net/snmp"], capture_output=True,
                         text=True).stdout.splitlines()
    udp = [line.split()[1:] for line in out if line.startswith("Udp:")]
    if len(udp) < 2 or "RcvbufErrors" not in udp[0]:
        return 0
    return int(udp[1][udp[0].index("RcvbufErrors")])


def dropped_of(src):
    m = re.search(r"(\d+) messages dropped", src.get("error") or "")
    return int(m.group(1)) if m else 0


_host_ns = None


def setns(fd):
    """setns(2) for this thread (os.setns needs Python 3.12)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns")


def enter_netns():
    global _host_ns
    _host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{NETNS}", os.O_RDONLY)
    setns(fd)
    os.close(fd)


def leave_netns():
    global _host_ns
    if _host_ns is not None:
        setns(_host_ns)
        os.close(_host_ns)
        _host_ns = None


# ---------------------------------------------------------------- fail2ban

F2B_LOCAL = """[Definition]
loglevel = INFO
logtarget = {d}/fail2ban.log
socket = {d}/fail2ban.sock
pidfile = {d}/fail2ban.pid
dbfile = :memory:
"""

F2B_JAIL = """[DEFAULT]
ignoreself = false
ignoreip =
bantime = 3600
findtime = 600
maxretry = 5
backend = pyinotify
banaction = dummy
action = dummy[name=flood]

[flood]
enabled = true
filter = sshd
logpath = {log}
"""


def f2b_step(rate, markers):
    d = WORK / f"fail2ban-{rate}"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree("/etc/fail2ban", d / "etc", ignore=shutil.ignore_patterns("jail.d", "*.local"))
    (d / "etc" / "jail.d").mkdir()
    log_path = d / "flood.log"
    log_path.write_bytes(b"")
    (d / "etc" / "fail2ban.local").write_text(F2B_LOCAL.format(d=d))
    (d / "etc" / "jail.local").write_text(F2B_JAIL.format(log=log_path))
    # dummy.conf writes its ban list under /var/run/fail2ban.
    os.makedirs("/var/run/fail2ban", exist_ok=True)
    proc = subprocess.Popen(["fail2ban-server", "-f", "-x", "-c", str(d / "etc"), "-s", str(d / "fail2ban.sock"),
                             "-p", str(d / "fail2ban.pid")], stdin=subprocess.DEVNULL,
                            stdout=open(d / "server.out", "wb"), stderr=subprocess.STDOUT)
    flog = d / "fail2ban.log"
    if not wait_until(lambda: flog.exists() and "Jail 'flood' started" in flog.read_text(errors="replace"), 60, 0.2):
        stop(proc)
        raise BenchError(f"fail2ban did not start its jail; see {d}/server.out and {flog}")
    decided = {}
    rx = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*\] Ban ([0-9.]+)")

    def poll():
        for line in flog.read_text(errors="replace").splitlines():
            m = rx.search(line)
            if m and m.group(2) not in decided:
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                decided[m.group(2)] = t
    try:
        timeline, written, offered = write_flood(log_path, rate, STEP_SECS, markers, 1.0)

        def done():
            poll()
            return all(ip in decided for ip, _ in written)
        wait_until(done, GRACE, 0.2)
        lags, missed = marker_result(written, decided)
        rss = rss_mb(proc.pid)
    finally:
        stop(proc)
    shutil.rmtree(d, ignore_errors=True)
    return {"tool": "fail2ban", "source": "file", "offered_lines_per_s": round(offered), "target_lines_per_s": rate,
            "lines_written": timeline[-1][1], "marker_lag_p50_s": pct(lags, 50), "marker_lag_p99_s": pct(lags, 99),
            "marker_lag_max_s": max(lags) if lags else None, "markers": len(written), "markers_missed": missed,
            "marker_lags_s": [round(x, 4) for x in lags], "peak_rss_mb": rss,
            "ok": missed == 0 and bool(lags) and max(lags) < LAG_OK}


# ---------------------------------------------------------------- CrowdSec

def cs_step(rate, markers):
    sys.path.insert(0, str(ROOT / "bench"))
    import sidebyside
    sidebyside.WORK = WORK
    cfg, port = sidebyside.cs_config(f"cs-flood-{rate}")
    d = cfg.parent
    log_path = d / "flood.log"
    log_path.write_bytes(b"")
    (d / "acquis.yaml").write_text(f"filenames:\n  - {log_path}\nlabels:\n  type: syslog\n")
    proc = subprocess.Popen(["crowdsec", "-c", str(cfg), "-no-capi"], stdin=subprocess.DEVNULL,
                            stdout=open(d / "crowdsec.out", "wb"), stderr=subprocess.STDOUT, cwd=str(d))
    db = d / "crowdsec.db"

    def started():
        out = (d / "crowdsec.out").read_text(errors="replace")
        return "Starting processing data" in out or "starting file tailing" in out.lower() or "Adding file" in out
    if not wait_until(started, 60, 0.2):
        stop(proc)
        raise BenchError(f"crowdsec did not start its acquisition; see {d}/crowdsec.out")
    time.sleep(2)
    decided = {}
    running = [True]

    def poller():
        while running[0]:
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
                rows = con.execute("select value from decisions").fetchall()
                con.close()
                t = time.time()
                for (v,) in rows:
                    decided.setdefault(v, t)
            except sqlite3.Error:
                pass
            time.sleep(0.05)
    th = threading.Thread(target=poller, daemon=True)
    th.start()
    try:
        timeline, written, offered = write_flood(log_path, rate, STEP_SECS, markers, 1.0)
        wait_until(lambda: all(ip in decided for ip, _ in written), GRACE, 0.2)
        lags, missed = marker_result(written, decided)
        rss = rss_mb(proc.pid)
    finally:
        running[0] = False
        stop(proc)
    shutil.rmtree(d, ignore_errors=True)
    return {"tool": "crowdsec", "source": "file", "offered_lines_per_s": round(offered), "target_lines_per_s": rate,
            "lines_written": timeline[-1][1], "marker_lag_p50_s": pct(lags, 50), "marker_lag_p99_s": pct(lags, 99),
            "marker_lag_max_s": max(lags) if lags else None, "markers": len(written), "markers_missed": missed,
            "marker_lags_s": [round(x, 4) for x in lags], "peak_rss_mb": rss,
            "ok": missed == 0 and bool(lags) and max(lags) < LAG_OK}


# ---------------------------------------------------------------- chart

COLORS = {"shield": "#1f77b4", "shield-syslog": "#17becf", "shield-journald": "#9467bd", "fail2ban": "#d62728", "crowdsec": "#2ca02c"}


def series(results):
    out = {}
    for r in results:
        if r.get("phase") != "ladder":
            continue
        name = r["tool"] if r["source"] == "file" else f"{r['tool']}-{r['source']}"
        lag = r.get("counter_lag_max_s") if r["tool"] == "shield" else None
        m = r.get("marker_lag_max_s")
        worst = max(x for x in [lag, m, 0.0] if x is not None)
        if r.get("markers_missed"):
            worst = max(worst, GRACE)
        out.setdefault(name, []).append((r["offered_lines_per_s"], max(worst, 0.001)))
    return out


def chart(results):
    s = series(results)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return chart_svg(s)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, pts in s.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=COLORS.get(name))
    ax.axhline(LAG_OK, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered sshd lines/s")
    ax.set_ylabel("worst lag, line written -> decided (s)")
    ax.set_title("Live daemon under a flood (issue 26)")
    ax.legend()
    out = RESULTS / "flood.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


def chart_svg(s):
    """The same chart as hand-written SVG (no matplotlib here): log-log axes."""
    import math
    W, H, L, R, T, B = 760, 430, 70, 150, 40, 50
    xs = [p[0] for pts in s.values() for p in pts] or [1000, 1e6]
    x0, x1 = math.log10(min(xs) / 1.5), math.log10(max(xs) * 1.5)
    y0, y1 = math.log10(0.001), math.log10(GRACE * 2)

    def px(x):
        return L + (math.log10(x) - x0) / (x1 - x0) * (W - L - R)

    def py(y):
        return H - B - (math.log10(y) - y0) / (y1 - y0) * (H - T - B)
    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2 - 60}" y="22" font-size="15">Live daemon under a flood (issue 26)</text>']
    for k in range(math.ceil(x0), math.floor(x1) + 1):
        x = px(10 ** k)
        e.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
        label = {3: "1k", 4: "10k", 5: "100k", 6: "1M", 7: "10M"}.get(k, f"1e{k}")
        e.append(f'<text x="{x - 10:.1f}" y="{H - B + 16}">{label}</text>')
    for k in range(math.ceil(y0), math.floor(y1) + 1):
        y = py(10 ** k)
        e.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        e.append(f'<text x="{L - 45}" y="{y + 4:.1f}">{10 ** k:g} s</text>')
    y = py(LAG_OK)
    e.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="grey" stroke-dasharray="5,4"/>')
    e.append(f'<text x="{L + (W - L - R) / 2 - 90}" y="{H - 12}">offered sshd lines/s (log)</text>')
    e.append(f'<text transform="translate(16,{H - B - 20}) rotate(-90)">worst lag, written → decided (s, log)</text>')
    for i, (name, pts) in enumerate(s.items()):
        c = COLORS.get(name, "black")
        e.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
            c, " ".join(f"{px(x):.1f},{py(min(v, GRACE * 2)):.1f}" for x, v in pts)))
        for x, v in pts:
            e.append(f'<circle cx="{px(x):.1f}" cy="{py(min(v, GRACE * 2)):.1f}" r="3.5" fill="{c}"/>')
        e.append(f'<rect x="{W - R + 15}" y="{T + 20 * i}" width="12" height="12" fill="{c}"/>')
        e.append(f'<text x="{W - R + 32}" y="{T + 20 * i + 11}">{name}</text>')
    e.append("</svg>")
    out = RESULTS / "flood.svg"
    out.write_text("\n".join(e) + "\n")
    return out


# ---------------------------------------------------------------- main

def ladder(name, steps, step):
    out = []
    markers = Markers()
    for rate in steps:
        log(f"{name}: {rate} lines/s for {STEP_SECS:g} s")
        try:
            r = step(rate, markers)
        except BenchError as e:
            log(f"{name}: {e}")
            break
        r["phase"] = "ladder"
        out.append(r)
        log(f"{name}: offered {r['offered_lines_per_s']}/s, marker lag max {r['marker_lag_max_s']}, "
            f"missed {r['markers_missed']}/{r['markers']}, counter lag {r.get('counter_lag_max_s')}, ok {r['ok']}")
        if not r["ok"]:
            break
    return out


def main():
    if os.geteuid() != 0:
        sys.exit("bench/flood.py needs root (a network namespace and nftables)")
    shield_tools = {"shield", "journald", "syslog", "drop"} & set(TOOLS)
    if shield_tools and not Path(SHIELD).exists():
        sys.exit(f"no shield binary at {SHIELD}: cargo build --release first, or set SHIELD_BIN")
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    if shield_tools:
        netns_up()
    try:
        if "shield" in TOOLS:
            results += ladder("shield file", SHIELD_RATES, lambda r, m: shield_step("file", r, m))
        if "journald" in TOOLS:
            results += ladder("shield journald", JOURNAL_RATES, lambda r, m: shield_step("journald", r, m))
        if "syslog" in TOOLS:
            results += ladder("shield syslog", SYSLOG_RATES, lambda r, m: shield_step("syslog", r, m))
        if "drop" in TOOLS:
            log(f"line -> drop: {DROP_MARKERS_PER_S:g} attackers/s among {DROP_RATE} noise lines/s")
            r = shield_step("file", DROP_RATE, Markers(), DROP_MARKERS_PER_S, tag="shield-drop")
            r["phase"] = "line_to_drop"
            results.append(r)
            log(f"line -> drop: p50 {r['marker_lag_p50_s']} p99 {r['marker_lag_p99_s']} over {r['markers']}")
    finally:
        if shield_tools:
            netns_down()
    if "fail2ban" in TOOLS:
        results += ladder("fail2ban", F2B_RATES, f2b_step)
    if "crowdsec" in TOOLS:
        results += ladder("crowdsec", CS_RATES, cs_step)
    for extra in filter(None, os.environ.get("MERGE", "").split(",")):
        # Results of an earlier run (e.g. fail2ban and CrowdSec measured separately).
        results += json.loads(Path(extra).read_text())["results"]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    best = {}
    for r in results:
        if r.get("phase") == "ladder" and r["ok"]:
            k = f"{r['tool']}/{r['source']}"
            best[k] = max(best.get(k, 0), r["offered_lines_per_s"])
    doc = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
           "machine": {"cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]},
           "step_secs": STEP_SECS, "lag_ok_s": LAG_OK, "highest_rate_lag_under_1s": best, "results": results}
    out = Path(os.environ.get("OUT", RESULTS / "flood.json"))
    out.write_text(json.dumps(doc, indent=1) + "\n")
    log(f"wrote {out} and {chart(results)}")
    print(json.dumps({"highest_rate_lag_under_1s": best}, indent=1))


if __name__ == "__main__":
    main()
