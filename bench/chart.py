"""Draws bench/results/sidebyside.png from the results of bench/sidebyside.py.

Owns only the picture: three panels (replay lines/s, peak RSS, decision lookups
per second), log scale where the tools differ by orders of magnitude.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"shield": "#1f77b4", "shield-f2b": "#6baed6", "fail2ban": "#d62728", "crowdsec": "#ff7f0e"}
LABELS = {"shield": "Shield (own packs)", "shield-f2b": "Shield + fail2ban filter",
          "fail2ban": "fail2ban-regex", "crowdsec": "CrowdSec"}


def draw(res, path):
    rm = res["summary"]["replay_median"]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.8))
    inputs = ["sshd", "nginx"]
    tools = ["shield", "shield-f2b", "fail2ban", "crowdsec"]
    w = 0.2
    for panel, key, title, log in ((0, "lines_per_s", "Replay throughput (lines/s, log scale)", True),
                                   (1, "rss_mb", "Peak RSS during replay (MB)", False)):
        a = ax[panel]
        for t_i, t in enumerate(tools):
            xs, ys = [], []
            for i_i, inp in enumerate(inputs):
                v = rm.get(f"{inp}/{t}")
                if v:
                    xs.append(i_i + (t_i - 1.5) * w)
                    ys.append(v[key])
            if xs:
                bars = a.bar(xs, ys, w, label=LABELS[t], color=COLORS[t])
                a.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=7, rotation=90, padding=2)
        a.set_xticks(range(len(inputs)))
        crowd = rm.get("nginx/crowdsec")
        n = res["params"]["lines"]
        cs_ssh = rm.get("sshd/crowdsec")
        a.set_xticklabels([f"sshd ({n:,} lines" + (f";\nCrowdSec {cs_ssh['lines']:,}" if cs_ssh and cs_ssh["lines"] != n else "") + ")",
                           f"nginx access ({n:,}" + (f";\nCrowdSec {crowd['lines']:,}" if crowd else "") + ")"], fontsize=8)
        if log:
            a.set_yscale("log")
        a.set_title(title, fontsize=10)
        a.margins(y=0.25)
    ax[0].legend(fontsize=8, loc="lower left")
    g = res["summary"]["gate_req_per_s"]
    names = [("shield-decisions", "Shield\n/v1/decisions", COLORS["shield"]),
             ("shield-gate", "Shield\n/gate", COLORS["shield-f2b"]),
             ("crowdsec-decisions", "CrowdSec LAPI\n/v1/decisions", COLORS["crowdsec"])]
    names = [n for n in names if n[0] in g]
    bars = ax[2].bar([n[1] for n in names], [g[n[0]] for n in names], color=[n[2] for n in names])
    ax[2].bar_label(bars, labels=[f"{g[n[0]]:,.0f}" for n in names], fontsize=8)
    ax[2].set_title(f"Decision lookups (req/s, wrk -t2 -c50, {res['params']['gate_decisions']:,} bans)", fontsize=10)
    ax[2].margins(y=0.15)
    lo, hi = res["load1_range"]
    fig.suptitle(f"Shield vs fail2ban vs CrowdSec, one interleaved run, {res['started_utc']} "
                 f"({res['machine']['cpus']} CPUs, load average {lo}-{hi})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
