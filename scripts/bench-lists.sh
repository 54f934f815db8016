#!/usr/bin/env bash
# Loads a FireHOL-format blocklist of N entries (default 600k: 512 /24 ranges
# in 198.18.0.0/15, the rest single addresses in 100.64.0.0/10) into the
# nftables sets of a throwaway network namespace through the real daemon, and
# prints the time the decision thread spent in the store and in the one
# firewall batch (from `shield status`), the elements in the kernel sets,
# and the time of a second refresh that changes 1% of the list.
#
#   sudo scripts/bench-lists.sh [--bin target/release/shield] [N]
#
# Root only (network namespace, nftables). Everything stays inside the
# namespace; the namespace and the temp dir are removed on exit.
set -euo pipefail
bin=target/release/shield
if [ "${1:-}" = "--bin" ]; then bin=$2; shift 2; fi
n=${1:-600000}
bin=$(readlink -f "$bin")
ns="sh-benchlists-$$"
dir=$(mktemp -d)
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up

gen() { # $1: entries to drop from the start of the hosts, $2: extra hosts at the end
  python3 - "$n" "$1" "$2" <<'EOF'
import sys, ipaddress
n, skip, extra = map(int, sys.argv[1:])
ranges = min(512, n // 10)
out = ["#", "# firehol_level1+2+3 (test data: CGNAT and benchmark space)", "#"]
out += [f"198.{18 + i // 256}.{i % 256}.0/24" for i in range(ranges)]
base = int(ipaddress.IPv4Address("100.64.0.0"))
out += [str(ipaddress.IPv4Address(base + i + 1)) for i in range(skip, n - ranges + extra)]
print("\n".join(out))
EOF
}
gen 0 0 > "$dir/list.netset"
cat > "$dir/shield.toml" <<EOF
[store]
path = "$dir/shield.db"
[firewall]
backend = "nftables"
[api]
listen = ""
socket = "$dir/shield.sock"
[decisions]
allow_own_addresses = false
[[list]]
name = "big"
file = "$dir/list.netset"
refresh = "1h"
duration = "1d"
EOF
status() { "$bin" --config "$dir/shield.toml" status --format json 2>/dev/null || true; }
field() { python3 -c "import json,sys; l=[x for x in json.load(sys.stdin).get('lists',[]) if x['name']=='big']; print(l[0].get('$1') if l else '')"; }
SHIELD_LOG=warn ip netns exec "$ns" "$bin" --config "$dir/shield.toml" run 2> "$dir/daemon.log" &
pid=$!
start=$(date +%s.%N)
until [ "$(status | field refreshes)" = "1" ]; do sleep 0.5; done
end=$(date +%s.%N)
s=$(status)
count=$(ip netns exec "$ns" nft -j list ruleset | python3 -c "import json,sys; print(sum(len(x['set'].get('elem',[])) for x in json.load(sys.stdin)['nftables'] if 'set' in x))")
echo "first load: $n entries, added $(echo "$s" | field added), store $(echo "$s" | field store_ms) ms, nftables batch $(echo "$s" | field apply_ms) ms, start to loaded $(python3 -c "print(round($end-$start,1))") s, kernel elements $count"
# 1% churn: drop the first n/200 hosts, add n/200 new ones.
churn=$((n / 200))
gen "$churn" "$churn" > "$dir/list.tmp" && mv "$dir/list.tmp" "$dir/list.netset"
# A reload restarts the list tasks, which read the list again at once (the
# hour-long interval keeps a timed refresh from reading a half-written file).
kill -HUP "$pid"
until [ "$(status | field refreshes)" = "2" ]; do sleep 0.5; done
s=$(status)
echo "refresh with 1% churn: added $(echo "$s" | field added), removed $(echo "$s" | field removed), unchanged $(echo "$s" | field unchanged), store $(echo "$s" | field store_ms) ms, nftables batch $(echo "$s" | field apply_ms) ms"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
