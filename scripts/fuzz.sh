#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, starting from the
# seed corpus kept in the repository (fuzz/corpus/<target>/). New inputs found
# during the run go to a scratch corpus, so the repository stays small; a
# crash stops the script with the reproducer in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]    (default 20 s, all targets)
#
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP lets cargo-fuzz pass
# the -Z sanitizer flags. Installs cargo-fuzz if it is missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-20}"
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_FUZZ:-$PWD/target}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
# One build for all targets. -a keeps debug assertions and overflow checks on,
# so they are found too. The code under test is safe Rust, where a panic or an
# overflow is the failure to find; ASan (`FUZZ_SANITIZER=address`) adds little
# there and triples the build time, so CI fuzzes without it by default.
san="${FUZZ_SANITIZER:-none}"
cargo fuzz build -a -s "$san"
summary=()
for t in "${targets[@]}"; do
  scratch="$(mktemp -d)"
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  echo "== $t: ${secs}s"
  if ! cargo fuzz run -a -s "$san" "$t" "$scratch" "corpus/$t" -- \
      -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -50 "$log"
    echo "fuzz target $t failed: reproducer under fuzz/artifacts/$t/" >&2
    exit 1
  fi
  execs="$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')"
  summary+=("$t ${execs:-?} execs in ${secs}s")
  rm -rf "$scratch" "$log"
done
printf '%s\n' "${summary[@]}"
