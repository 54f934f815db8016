#!/usr/bin/env bash
# Replay throughput and peak memory of `shield replay` with every built-in
# rule pack and its default scenarios (issue #2), on generated logs:
# 1M sshd lines, 1M nginx lines, and 4M sshd lines to show memory is flat in
# the log's length. Usage: [SHIELD_BIN=path] scripts/bench-engine.sh [LINES]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${SHIELD_BIN:-}" ]; then
  cargo build --release --locked -q
  SHIELD_BIN=$CARGO_TARGET_DIR/release/shield
fi
BIN=$SHIELD_BIN
[ -x /usr/bin/time ] || { apt-get install -y -qq time >/dev/null; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
$BIN gen-log sshd --lines "$N" --attackers 200 --seed 42 --out "$W/sshd.log" --truth "$W/sshd.truth"
$BIN gen-log nginx --lines "$N" --attackers 200 --seed 42 --out "$W/nginx.log" --truth "$W/nginx.truth"
for i in 1 2 3 4; do cat "$W/sshd.log"; done > "$W/sshd4.log"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| input | lines | MB | wall s (3 runs) | lines/s wall (best) | lines/s CPU (best) | peak RSS MB (max) | decisions | attackers in truth |"
echo "|---|---:|---:|---|---:|---:|---:|---:|---:|"
for f in sshd nginx sshd4; do
  walls=(); best=0; bestcpu=0; rss=0; dec=0; lines=0
  for r in 1 2 3; do
    /usr/bin/time -f "%e %M %U %S" -o "$W/time" taskset -c 0 "$BIN" replay --format json "$W/$f.log" > "$W/out.json"
    read -r wall kb usr sys < "$W/time"
    cpu=$(python3 -c "print(int($N * (4 if '$f' == 'sshd4' else 1) / max($usr + $sys, 0.001)))")
    [ "$cpu" -gt "$bestcpu" ] && bestcpu=$cpu
    walls+=("$wall")
    read -r lines lps dec < <(python3 -c "import json;d=json.load(open('$W/out.json'));print(d['lines'],int(d['lines']/d['elapsed_s']),len(d['decisions']))")
    [ "$lps" -gt "$best" ] && best=$lps
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  truth=$(wc -l < "$W/${f%4}.truth")
  mb=$(( $(stat -c %s "$W/$f.log") / 1000000 ))
  echo "| $f | $lines | $mb | ${walls[*]} | $best | $bestcpu | $((rss / 1024)) | $dec | $truth |"
done
