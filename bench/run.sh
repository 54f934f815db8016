#!/usr/bin/env bash
# Side-by-side benchmark of Shield, fail2ban and CrowdSec (issue #8), in one run.
#
# Run as root on Debian 12 from a clone of the repository:   sudo bench/run.sh
# It installs fail2ban, crowdsec, time, wrk and python3-matplotlib from Debian
# without starting any service, builds shield (release), then runs
# bench/sidebyside.py, which generates the inputs, measures every tool
# interleaved, and writes bench/results/latest.json, bench/results/sidebyside.png
# and the sidebyside section of BENCHMARKS.md.
#
# Knobs (environment): REPS (3), LINES (1000000), ATTACKERS (200), SEED (42),
# CS_SSHD_LINES (1000000), CS_NGINX_LINES (30000), CS_REPS (1), GATE_SECS (10),
# GATE_DECISIONS (10000), BENCH_WORK (/var/tmp/shield-bench), SHIELD_BIN (build it), RESUME=1,
# NO_WRITE=1 (measure, but leave BENCHMARKS.md and bench/results untouched).
# Nothing leaves the machine: CrowdSec runs with its central API disabled
# (-no-capi, no online_client) and its local API on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "bench/run.sh must run as root (it installs Debian packages); try: sudo $0" >&2
  exit 2
fi

export DEBIAN_FRONTEND=noninteractive
# Package scripts must not start daemons (fail2ban, crowdsec).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
fi
# crowdsec's postinst registers with the central API unless this file exists and is NOT empty.
mkdir -p /etc/crowdsec
if [ ! -s /etc/crowdsec/online_api_credentials.yaml ]; then
  echo '# central API disabled: offline benchmark (shield bench/run.sh)' > /etc/crowdsec/online_api_credentials.yaml
fi
pkgs=(fail2ban crowdsec time wrk python3 python3-matplotlib curl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" \
    || dpkg --configure -a   # a half-configured crowdsec (online registration) is finished here
fi
dpkg-query -W -f='${Status}' crowdsec | grep -q 'install ok installed' || {
  echo "crowdsec is not configured: check /etc/crowdsec/online_api_credentials.yaml is non-empty, then: dpkg --configure crowdsec" >&2
  exit 1
}
# Make sure no packaged service is running (we start our own private instances).
for s in fail2ban-server crowdsec; do
  if pgrep -x "$s" >/dev/null; then
    echo "note: a system $s is running; it competes for CPU (not stopped by this script)" >&2
  fi
done

if [ -z "${SHIELD_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  echo "== cargo build --release (target dir $CARGO_TARGET_DIR)"
  cargo build --release --quiet
  SHIELD_BIN="$CARGO_TARGET_DIR/release/shield"
fi
export SHIELD_BIN
# Debian's python3 (where python3-matplotlib lives), not whatever python3 is first on PATH.
exec /usr/bin/python3 bench/sidebyside.py "$@"
