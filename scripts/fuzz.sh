#!/usr/bin/env bash
# Fuzzes tapstream's parsers, flow table and output with libFuzzer.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds the targets of fuzz/ with cargo-fuzz, then runs each TARGET (default:
# all seven) for SECONDS (default 60), one after the other, and prints a
# summary: executions, executions per second, coverage (libFuzzer's `cov:`
# edges and `ft:` features at the end of the run) and corpus size. Exits
# non-zero if any target crashed, leaked, ran out of memory or timed out; the
# input that did it is in fuzz/artifacts/<target>/ (libFuzzer's message names
# the file), and the run's log in fuzz/logs/<target>.log. Replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a <target> fuzz/artifacts/<target>/<file>
#
# Corpora, in the order given to libFuzzer (it writes new inputs to the first
# only): fuzz/corpus/<target>/ (git-ignored, grows from run to run), the
# committed seeds fuzz/seeds/<target>/ (made by the project, see
# fuzz/src/seeds.rs), and for capture_reader and decode the shared edge-case
# captures ../shared/data/pcaps/edge/ when present (read in place, with its
# subdirectories; never copied into the repository), and for config the
# sample configurations deploy/**/*.toml (linked from a temporary directory).
#
# Stable Rust: cargo-fuzz passes -Zsanitizer=address, a nightly flag, so the
# build sets RUSTC_BOOTSTRAP=1. FUZZ_SANITIZER=none builds without
# AddressSanitizer (faster; the fuzzed code has no `unsafe`).
# cargo-fuzz itself is installed (pinned) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(capture_reader decode flow_table eve_roundtrip config kafka_packets kafka_flows)
SANITIZER="${FUZZ_SANITIZER:-address}"

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
    exit 2
fi
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${ALL_TARGETS[@]}")
fi
for t in "${targets[@]}"; do
    if [ ! -f "fuzz/fuzz_targets/$t.rs" ]; then
        echo "unknown target $t (targets: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done

# Largest input per target: whole small captures; a few hundred flow table
# steps; one alert; a config file; a Kafka message (or a few flow rows).
max_len() {
    case "$1" in
        capture_reader | decode) echo 65536 ;;
        flow_table) echo 4096 ;;
        eve_roundtrip) echo 1024 ;;
        *) echo 16384 ;;
    esac
}

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

echo "== building ${targets[*]} (sanitizer: $SANITIZER)"
for t in "${targets[@]}"; do
    RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a --sanitizer "$SANITIZER" "$t"
done
target_dir="${CARGO_TARGET_DIR:-fuzz/target}"
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/config"
while IFS= read -r -d '' f; do
    ln -s "$PWD/$f" "$tmp/config/$(echo "$f" | tr / _)"
done < <(find deploy -name '*.toml' -print0)
edge=../shared/data/pcaps/edge

mkdir -p fuzz/logs
summary="$tmp/summary"
failed=0
for t in "${targets[@]}"; do
    corpora=("fuzz/corpus/$t" "fuzz/seeds/$t")
    case "$t" in
        capture_reader | decode) [ -d "$edge" ] && corpora+=("$edge") ;;
        config) corpora+=("$tmp/config") ;;
    esac
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="fuzz/logs/$t.log"
    echo "== $t: ${seconds}s, corpora ${corpora[*]}"
    rc=0
    "$bin_dir/$t" "${corpora[@]}" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -max_len="$(max_len "$t")" -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        failed=1
        result="FAILED (exit $rc)"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|thread .* panicked|artifact_prefix|Test unit written)' "$log" | head -5 >&2 || true
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$seconds" "${runs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "$corpus" "$result" >>"$summary"
done

echo
{
    printf 'target\tseconds\texecutions\texec/s\tcov\tft\tcorpus\tresult\n'
    cat "$summary"
} | awk -F'\t' '{ printf "%-15s %8s %12s %8s %6s %7s %7s  %s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
exit "$failed"
