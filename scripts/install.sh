#!/usr/bin/env bash
# Sets up Shield on this Debian host and starts it: builds the binary,
# installs it to /usr/local/bin, installs the systemd unit and starts the
# daemon on built-in defaults (guards sshd; state in /var/lib/shield;
# nftables when present). Without systemd, runs the daemon in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  # Root, through sudo if there is one (minimal images have none and run as root).
  command -v sudo >/dev/null && exec sudo "$0" "$@"
  echo "run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
command -v nft >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends nftables; }
command -v cc >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev; }
if ! command -v cargo >/dev/null; then
  command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends curl ca-certificates; }
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi
cargo build --release --locked
install -m 0755 target/release/shield /usr/local/bin/shield
install -d -m 0700 /var/lib/shield && chmod 0700 /var/lib/shield
mkdir -p /etc/shield
shield check
if [ -d /run/systemd/system ]; then
  # The package's hardened unit, pointed at the binary installed above.
  sed 's#/usr/bin/shield#/usr/local/bin/shield#g' packaging/shield.service > /etc/systemd/system/shield.service
  chmod 0644 /etc/systemd/system/shield.service
  systemctl daemon-reload
  systemctl enable --now shield
  sleep 1
  shield status
else
  echo "no systemd: running shield in the foreground (Ctrl-C stops it)"
  exec shield run
fi
