#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages), then
# runs formatting, lints and every test (unit, integration with the real
# binary, nftables in network namespaces, nginx, crowdsec-firewall-bouncer,
# the fail2ban agreement test). Run as root: the firewall tests need it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  # The firewall tests create network namespaces: root, through sudo if
  # there is one (minimal images have none and run as root already).
  command -v sudo >/dev/null && exec sudo -E "$0" "$@"
  echo "run as root (the firewall tests create network namespaces)" >&2
  exit 1
fi
bash .ci/install-deps
if ! command -v cargo >/dev/null; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# No crate may have a module cycle (reads the sources; fails naming the cycle).
cargo test --locked --test module_cycles
# Tests that create network namespaces or run nginx run one at a time within
# their binaries where they must; the rest run in parallel.
cargo test --workspace --locked -- --test-threads=2
# Every parser of attacker or peer bytes, fuzzed briefly from the corpus in
# fuzz/corpus (every target in fuzz/, 20 s each, one build); fails on a crash.
scripts/fuzz.sh "${SHIELD_FUZZ_SECS:-20}"
echo "all tests passed"
