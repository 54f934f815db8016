#!/usr/bin/env python3
"""Layer benchmarks (issue #4), as root, in throwaway network namespaces.

1. Time from a line appended to a followed log until its address is in the
   kernel set: the real daemon (release build) tails a log in a namespace with
   the nftables layer; `nft monitor` in the same namespace reports each element
   as the kernel adds it. N attacks from distinct addresses, one at a time.
2. Gate throughput: wrk against the daemon's /gate and /v1/decisions?ip= on
   loopback with 10k decisions loaded.

Usage: sudo scripts/bench-layers.py [--bin target/release/shield] [--n 300]
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

def sh(*a, **k):
    return subprocess.run(a, check=True, capture_output=True, text=True, **k).stdout

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait_sock(path, t=20):
    end = time.time() + t
    while time.time() < end:
        try:
            c = socket.socket(socket.AF_UNIX); c.connect(path); c.close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"daemon did not come up ({path})")

def pct(v, p):
    v = sorted(v); i = min(len(v) - 1, int(round(p / 100 * (len(v) - 1)))); return v[i]

def latency(bin_, n):
    ns = f"shbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    sh("ip", "netns", "add", ns)
    d = tempfile.mkdtemp()
    procs = []
    try:
        log = os.path.join(d, "auth.log"); open(log, "w").close()
        cfg = os.path.join(d, "shield.toml")
        open(cfg, "w").write(f'''
[store]
path = "{d}/shield.db"
[engine]
no_default_scenarios = true
[firewall]
backend = "nftables"
[api]
listen = ""
socket = "{d}/shield.sock"
[decisions.escalation]
enabled = false
[[source]]
name = "sshd"
paths = ["{log}"]
packs = ["sshd"]
[[scenario]]
name = "one-strike"
rules = ["sshd-failed-password"]
capacity = 1
leak = "1h"
duration = "1h"
''')
        daemon = subprocess.Popen(["ip", "netns", "exec", ns, bin_, "--config", cfg, "run"],
                                  stderr=open(os.path.join(d, "daemon.log"), "w"))
        procs.append(daemon)
        wait_sock(os.path.join(d, "shield.sock"))
        mon = subprocess.Popen(["ip", "netns", "exec", ns, "nft", "monitor", "elements"],
                               stdout=subprocess.PIPE, text=True, bufsize=1)
        procs.append(mon)
        time.sleep(0.5)
        lat = []
        f = open(log, "a")
        for i in range(n):
            ip = f"198.51.{100 + i // 250}.{1 + i % 250}"
            line = f"Mar  1 10:00:00 h sshd[{i}]: Failed password for root from {ip} port 4000 ssh2\n"
            t0 = time.perf_counter()
            f.write(line * 2); f.flush()
            while True:
                ev = mon.stdout.readline()
                if not ev:
                    raise SystemExit("nft monitor ended")
                if ip in ev:
                    lat.append((time.perf_counter() - t0) * 1000); break
        return lat
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try: p.wait(5)
            except subprocess.TimeoutExpired: p.kill()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)

def gate(bin_, secs):
    d = tempfile.mkdtemp()
    port = free_port()
    cfg = os.path.join(d, "shield.toml")
    open(cfg, "w").write(f'''
[store]
path = "{d}/shield.db"
[[source]]
name = "x"
type = "stdin"
packs = ["sshd"]
[firewall]
backend = "dry-run"
[api]
listen = "127.0.0.1:{port}"
socket = "{d}/shield.sock"
''')
    # 10k decisions loaded into the store before start.
    import sqlite3
    now = int(time.time())
    subprocess.run([bin_, "--config", cfg, "check"], check=True, capture_output=True)
    db = sqlite3.connect(os.path.join(d, "shield.db"))
    subprocess.run([bin_, "--config", cfg, "decisions", "list"], capture_output=True)  # creates the schema
    db = sqlite3.connect(os.path.join(d, "shield.db"))
    db.executemany("INSERT INTO decisions (scope,target,type,scenario,origin,created,expires) VALUES ('ip',?,'ban','bench','manual',?,?)",
                   [(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}/32", now, now + 3600) for i in range(10000)])
    db.commit(); db.close()
    key = subprocess.run([bin_, "--config", cfg, "bouncers", "add", "bench"], check=True, capture_output=True, text=True).stdout.strip()
    daemon = subprocess.Popen([bin_, "--config", cfg, "run"], stdin=subprocess.PIPE, stderr=open(os.path.join(d, "daemon.log"), "w"))
    try:
        wait_sock(os.path.join(d, "shield.sock"))
        res = {}
        lua = os.path.join(d, "key.lua")
        open(lua, "w").write(f'wrk.headers["X-Api-Key"] = "{key}"\n')
        for name, url, extra in [("gate", f"http://127.0.0.1:{port}/gate", []),
                                 ("v1-decisions", f"http://127.0.0.1:{port}/v1/decisions?ip=10.0.1.1", ["-s", lua])]:
            out = sh("wrk", "-t2", "-c50", f"-d{secs}s", "--latency", *extra, url)
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
            v, u = float(p99.group(1)), p99.group(2)
            p99ms = v / 1000 if u == "us" else v * 1000 if u == "s" else v
            res[name] = {"rps": rps, "p99_ms": p99ms}
        return res
    finally:
        daemon.stdin.close(); daemon.send_signal(signal.SIGTERM); daemon.wait(10)
        shutil.rmtree(d, ignore_errors=True)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/shield")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--secs", type=int, default=10)
    a = ap.parse_args()
    lat = latency(os.path.abspath(a.bin), a.n)
    print(f"line -> kernel set: n={len(lat)} p50={pct(lat,50):.2f} ms p90={pct(lat,90):.2f} ms p99={pct(lat,99):.2f} ms max={max(lat):.2f} ms")
    g = gate(os.path.abspath(a.bin), a.secs)
    for k, v in g.items():
        print(f"{k}: {v['rps']:.0f} req/s, p99 {v['p99_ms']:.2f} ms (wrk -t2 -c50 -d{a.secs}s, 10k decisions loaded)")
    print(json.dumps({"latency_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99)}, "gate": g}))

if __name__ == "__main__":
    main()
