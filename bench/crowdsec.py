#!/usr/bin/env python3
"""CrowdSec hub content in Shield against CrowdSec itself, in one run (issue #20).

Owns the `crowdsec-hub` throughput measurement: it builds two CrowdSec configuration
directories, generates nginx and sshd logs, runs `shield replay --crowdsec` over the whole
logs and CrowdSec 1.4.6 (Debian) over a prefix of each, and prints a Markdown table plus
bench/results/crowdsec.json.

- `debian`: Debian 12's crowdsec package as installed (/etc/crowdsec: syslog-logs, nginx-logs,
  sshd-logs, apache2-logs, dateparse-enrich, http-logs, whitelists and its 35 scenarios), data
  from /var/lib/crowdsec/data (plus the http_path_traversal.txt Debian's 1.4.6 misses).
- `hub`: the current hub snapshot (/work/shared/data/crowdsec): the same parsers by name and
  every scenario of the crowdsecurity/nginx and crowdsecurity/sshd collections, followed
  through their sub-collections (base-http-scenarios, http-cve ...).

Both sides see the same configuration directory; CrowdSec's run reuses bench/sidebyside.py's
private-config harness (own SQLite DB, no central API, LAPI on loopback).

Environment: SHIELD_BIN, BENCH_WORK (default /var/tmp/shield-bench-crowdsec), LINES (200000),
CS_LINES (30000 nginx prefix for CrowdSec), CS_SSHD_LINES (200000), SEED (7), REPS (3),
SKIP_CROWDSEC=1 (Shield only).
"""

import sys

sys.dont_write_bytecode = True

import json
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.setdefault("BENCH_WORK", "/var/tmp/shield-bench-crowdsec"))
sys.path.insert(0, str(HERE))
import sidebyside as sbs  # noqa: E402  (reads BENCH_WORK at import)

ROOT = HERE.parent
SHIELD = os.environ.get("SHIELD_BIN") or str(ROOT / "target" / "release" / "shield")
SHARED = Path(os.environ.get("CROWDSEC_SHARED", "/work/shared/data/crowdsec"))
GENLOG = Path(os.environ.get("GENLOG", "/work/shared/tools/genlog.py"))
LINES = int(os.environ.get("LINES", "200000"))
CS_LINES = int(os.environ.get("CS_LINES", "30000"))
CS_SSHD_LINES = int(os.environ.get("CS_SSHD_LINES", str(LINES)))
SEED = int(os.environ.get("SEED", "7"))
REPS = int(os.environ.get("REPS", "3"))
SKIP_CS = os.environ.get("SKIP_CROWDSEC") == "1"
PARSERS = {
    "s00-raw": ["syslog-logs"],
    "s01-parse": ["nginx-logs", "sshd-logs"],
    "s02-enrich": ["dateparse-enrich", "http-logs", "whitelists"],
}


def debian_cfg():
    d = WORK / "cfg-debian"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree("/etc/crowdsec", d, symlinks=False,
                    ignore=shutil.ignore_patterns("config.yaml.local", "local_api_credentials.yaml"))
    data = WORK / "data-debian"
    if data.exists():
        shutil.rmtree(data)
    src = Path("/usr/share/crowdsec/data")
    if not src.is_dir():
        src = Path("/var/lib/crowdsec/data")
    shutil.copytree(src, data, ignore=shutil.ignore_patterns("*.db*"))
    if (data / "path_traversal.txt").exists() and not (data / "http_path_traversal.txt").exists():
        shutil.copy(data / "path_traversal.txt", data / "http_path_traversal.txt")
    (d / "config.yaml").write_text(f"config_paths:\n  data_dir: {data}/\n")
    return d


def collection(hub, name, seen, out):
    if name in seen:
        return
    seen.add(name)
    owner, short = name.split("/")
    import yaml  # python3-yaml: Debian's default python has it
    c = yaml.safe_load((hub / "collections" / owner / f"{short}.yaml").read_text())
    for s in c.get("scenarios") or []:
        out.add(s)
    for sub in c.get("collections") or []:
        collection(hub, sub, seen, out)


def hub_cfg():
    hub = SHARED / "hub"
    d = WORK / "cfg-hub"
    if d.exists():
        shutil.rmtree(d)
    for stage, names in PARSERS.items():
        (d / "parsers" / stage).mkdir(parents=True)
        for n in names:
            (d / "parsers" / stage / f"{n}.yaml").symlink_to(hub / "parsers" / stage / "crowdsecurity" / f"{n}.yaml")
    scen = set()
    seen = set()
    for c in ("crowdsecurity/nginx", "crowdsecurity/sshd"):
        collection(hub, c, seen, scen)
    (d / "scenarios").mkdir()
    for s in sorted(scen):
        owner, short = s.split("/")
        (d / "scenarios" / f"{short}.yaml").symlink_to(hub / "scenarios" / owner / f"{short}.yaml")
    (d / "patterns").symlink_to(SHARED / "patterns")
    (d / "config.yaml").write_text(f"config_paths:\n  data_dir: {SHARED / 'data'}/\n")
    return d, len(scen)


def gen(kind):
    inp = WORK / "inputs"
    inp.mkdir(parents=True, exist_ok=True)
    out = inp / f"{kind}.log"
    stamp = inp / f"{kind}.args"
    args = f"{LINES} {SEED}"
    if not (out.exists() and stamp.exists() and stamp.read_text() == args):
        subprocess.run([sys.executable, str(GENLOG), "--format", kind, "--lines", str(LINES),
                        "--seed", str(SEED), "-o", str(out), "--truth", str(inp / f"{kind}.truth")], check=True)
        stamp.write_text(args)
    return out


def shield(tag, cfg, typ, log, lines):
    out = WORK / "runs" / f"{tag}.json"
    r = sbs.timed(tag, [SHIELD, "replay", "--format", "json", "--crowdsec", str(cfg), "--log-type", typ,
                        str(log)], lines, out, WORK / "runs" / f"{tag}.err")
    rep = json.loads(out.read_text())
    r["banned"] = sorted(d["value"] for d in rep.get("decisions", []))
    return r


def median(runs):
    m = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    return dict(m, all_lines_per_s=[r["lines_per_s"] for r in runs])


def main():
    (WORK / "runs").mkdir(parents=True, exist_ok=True)
    cfgs = {"debian": debian_cfg()}
    cfgs["hub"], n_scen = hub_cfg()
    logs = {"nginx": gen("nginx"), "sshd": gen("sshd")}
    ver = subprocess.run([SHIELD, "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    res = {"shield": ver, "commit": commit, "lines": LINES, "seed": SEED, "hub_scenarios": n_scen, "runs": {}}
    typ = {"nginx": "nginx", "sshd": "syslog"}
    for rep in range(REPS):
        for cfg in ("debian", "hub"):
            for kind in ("nginx", "sshd"):
                tag = f"shield-{cfg}-{kind}-{rep}"
                res["runs"].setdefault(f"shield-{cfg}-{kind}", []).append(
                    shield(tag, cfgs[cfg], typ[kind], logs[kind], LINES))
    if not SKIP_CS:
        for kind, n in (("nginx", CS_LINES), ("sshd", CS_SSHD_LINES)):
            pre = sbs.prefix(logs[kind], n) if n < LINES else logs[kind]
            r = sbs.crowdsec_replay(f"crowdsec-debian-{kind}", pre, n, typ[kind])
            # One decision row per overflow: compare the banned addresses.
            r["banned"] = sorted({v for s, v, _ in r.pop("flagged") if s == "ip"})
            res["runs"][f"crowdsec-debian-{kind}"] = [r]
            # Shield on the same prefix, for the decisions.
            s = shield(f"shield-debian-{kind}-prefix", cfgs["debian"], typ[kind], pre, n)
            res["runs"][f"shield-debian-{kind}-prefix"] = [s]
            r["same_bans_as_shield"] = r["banned"] == s["banned"]
    summary = {k: median(v) for k, v in res["runs"].items()}
    res["summary"] = {k: {x: v[x] for x in ("lines", "wall_s", "lines_per_s", "rss_mb", "load1", "all_lines_per_s")}
                      | {"bans": len(v["banned"])} for k, v in summary.items()}
    out = ROOT / "bench" / "results" / "crowdsec.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"| run | lines | wall | lines/s (median of {REPS}) | peak RSS | bans |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, v in res["summary"].items():
        print(f"| {k} | {v['lines']:,} | {v['wall_s']:.2f} s | {v['lines_per_s']:,.0f} | {v['rss_mb']} MB | {v['bans']} |")
    for kind in ("nginx", "sshd"):
        cs = res["summary"].get(f"crowdsec-debian-{kind}")
        if cs:
            sh = res["summary"][f"shield-debian-{kind}"]
            same = res["runs"][f"crowdsec-debian-{kind}"][0]["same_bans_as_shield"]
            pre = res["summary"][f"shield-debian-{kind}-prefix"]
            cpu = res["runs"][f"crowdsec-debian-{kind}"][0]
            cpu_cs = (cpu["user_s"] + cpu["sys_s"]) / cs["lines"]
            cpu_sh = min(r["user_s"] + r["sys_s"] for r in res["runs"][f"shield-debian-{kind}"]) / sh["lines"]
            print(f"\n{kind}: shield/crowdsec lines/s {sh['lines_per_s'] / cs['lines_per_s']:,.0f}x "
                  f"(CPU per line {cpu_cs / cpu_sh:,.0f}x), peak RSS on the same prefix crowdsec/shield "
                  f"{cs['rss_mb'] / pre['rss_mb']:.1f}x, same banned addresses on the prefix: {same}")
    print(f"\nraw: {out}")


if __name__ == "__main__":
    main()
