#!/usr/bin/env python3
"""Slowloris against the gate behind real nginx (issue 19, item 6).

For each `shield` binary given (e.g. main's and this branch's), it starts the
daemon (dry-run firewall, state in a temp dir), nginx wired with the nginx
block of docs/gate.md in front of a static page, and then:

1. baseline: LOADS page loads through nginx from 127.0.0.3, one after another;
2. attack: a separate process opens ATTACKERS x PER half-sent requests to
   `[api] listen` from 127.0.0.10.. (each sends part of a request head,
   trickles a byte a second, reconnects 100 ms after being closed);
3. during the attack: LOADS page loads again.

It prints, per binary, answered/attempted and p50/p99 latency of the page
loads before and during the attack, the listener's counters from
`shield status`, and writes JSON to --out. Run as root (nginx, loopback source
addresses). Standard library only.

    sudo python3 bench/slowloris.py --shield before=/path/to/old/shield --shield after=target/release/shield
"""

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, proc, log):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited: {open(log).read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port}: {open(log).read()[-2000:]}")


def nginx_block():
    doc = open(os.path.join(REPO, "docs/gate.md")).read()
    m = re.search(r"```nginx\n(.*?)```", doc, re.S)
    return m.group(1)


def page_loads(port, n, timeout):
    """n sequential page loads from 127.0.0.3: (answered, latencies of answered, codes)."""
    lat, codes = [], {}
    for _ in range(n):
        t = time.perf_counter()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=("127.0.0.3", 0))
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            code = r.status
            c.close()
        except OSError as e:
            code = type(e).__name__
        dt = time.perf_counter() - t
        codes[str(code)] = codes.get(str(code), 0) + 1
        if code == 200:
            lat.append(dt)
    return len(lat), lat, codes


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def attack(port, attackers, per, stop_after, base):
    held = 0
    stop = time.time() + stop_after

    async def one(src):
        nonlocal held
        while time.time() < stop:
            try:
                s = socket.socket()
                s.setblocking(False)
                s.bind((src, 0))
                r, w = await asyncio.open_connection(sock=await _connect(s, port))
                w.write(b"GET /gate HTTP/1.1\r\nHost: x\r\nX-a: ")
                await w.drain()
                held += 1
                while time.time() < stop:
                    try:
                        b = await asyncio.wait_for(r.read(256), 1.0)
                        if not b:
                            break
                    except asyncio.TimeoutError:
                        w.write(b"a")
                        await w.drain()
                w.close()
            except (OSError, ConnectionError):
                pass
            await asyncio.sleep(0.1)

    tasks = [one(f"127.0.0.{base + a}") for a in range(attackers) for _ in range(per)]
    await asyncio.gather(*tasks)
    print(json.dumps({"held": held}), flush=True)


async def _connect(s, port):
    loop = asyncio.get_running_loop()
    await loop.sock_connect(s, ("127.0.0.1", port))
    return s


def run_one(label, shield, args):
    d = tempfile.mkdtemp(prefix=f"shield-slowloris-{label}-")
    os.chmod(d, 0o755)
    api, web = free_port(), free_port()
    open(f"{d}/auth.log", "w").close()
    cfg = f"""
[store]
path = "{d}/shield.db"
[firewall]
backend = "dry-run"
[api]
listen = "127.0.0.1:{api}"
socket = "{d}/shield.sock"
trusted_proxies = ["127.0.0.1/32"]
[decisions]
allow_own_addresses = false
[[source]]
name = "sshd"
paths = ["{d}/auth.log"]
packs = ["sshd"]
"""
    open(f"{d}/shield.toml", "w").write(cfg)
    dlog = f"{d}/daemon.log"
    daemon = subprocess.Popen([shield, "--config", f"{d}/shield.toml", "run"], stdout=open(dlog, "w"), stderr=subprocess.STDOUT)
    os.makedirs(f"{d}/www")
    open(f"{d}/www/index.html", "w").write("the page\n")
    conf = f"""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{web};
    root {d}/www;
{nginx_block().replace("127.0.0.1:8087", f"127.0.0.1:{api}")}
  }}
}}
"""
    open(f"{d}/nginx.conf", "w").write(conf)
    nginx = subprocess.Popen(["nginx", "-c", f"{d}/nginx.conf", "-p", d, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=open(f"{d}/nginx.out", "w"))
    out = {"label": label, "shield": shield}
    try:
        wait_port(api, "shield", daemon, dlog)
        wait_port(web, "nginx", nginx, f"{d}/nginx.out")
        ok, lat, codes = page_loads(web, args.loads, args.timeout)
        out["baseline"] = {"answered": ok, "attempted": args.loads, "codes": codes, "p50_ms": _ms(pct(lat, 50)), "p99_ms": _ms(pct(lat, 99))}
        att = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--attack", str(api), "--attackers", str(args.attackers), "--per", str(args.per), "--attack-seconds", str(args.attack_seconds), "--attack-base", str(args.attack_base)], stdout=subprocess.PIPE, text=True)
        time.sleep(args.settle)
        t0 = time.time()
        ok, lat, codes = page_loads(web, args.loads, args.timeout)
        out["attack"] = {"answered": ok, "attempted": args.loads, "codes": codes, "p50_ms": _ms(pct(lat, 50)), "p99_ms": _ms(pct(lat, 99)), "seconds": round(time.time() - t0, 1)}
        st = subprocess.run([shield, "--config", f"{d}/shield.toml", "status", "--format", "json"], capture_output=True, text=True)
        try:
            c = json.loads(st.stdout)["counters"]
            out["listener"] = {k: v for k, v in c.items() if k.startswith("api_")}
        except (ValueError, KeyError):
            out["listener"] = st.stdout[-500:] + st.stderr[-500:]
        att.terminate()
        try:
            att.wait(timeout=10)
        except subprocess.TimeoutExpired:
            att.kill()
    finally:
        nginx.terminate()
        daemon.terminate()
        nginx.wait()
        daemon.wait()
        shutil.rmtree(d, ignore_errors=True)
    return out


def _ms(x):
    return None if x is None else round(x * 1000, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shield", action="append", default=[], help="LABEL=PATH of a shield binary (repeatable)")
    p.add_argument("--attackers", type=int, default=20, help="source addresses 127.0.0.BASE..")
    p.add_argument("--per", type=int, default=100, help="half-sent requests per address")
    p.add_argument("--loads", type=int, default=200, help="page loads before and during the attack")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds a page load may take")
    p.add_argument("--settle", type=float, default=3.0, help="seconds between starting the attack and measuring")
    p.add_argument("--attack-seconds", type=float, default=120.0)
    p.add_argument("--attack-base", type=int, default=10, help="first attacker address 127.0.0.N (1: nginx's own address)")
    p.add_argument("--attack", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    if args.attack:
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        asyncio.run(attack(args.attack, args.attackers, args.per, args.attack_seconds, args.attack_base))
        return
    results = []
    for spec in args.shield:
        label, _, path = spec.partition("=")
        r = run_one(label, path, args)
        results.append(r)
        b, a = r["baseline"], r["attack"]
        print(f"{label}: baseline {b['answered']}/{b['attempted']} p99 {b['p99_ms']} ms; "
              f"during {args.attackers}x{args.per} half-sent requests: {a['answered']}/{a['attempted']} answered, "
              f"p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms, codes {a['codes']}; listener {r['listener']}", flush=True)
    if args.out:
        meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load1": os.getloadavg()[0],
                "attackers": args.attackers, "per": args.per, "attack_base": args.attack_base, "loads": args.loads}
        json.dump({"meta": meta, "results": results}, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
