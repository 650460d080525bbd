#!/usr/bin/env bash
# Fuzzing in CI: build every target once, run each for a fixed budget, fail on the first crash.
#
# A crash leaves its input in fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/
# and the replay tests (`cargo test`, in engine/src/fuzzing.rs and server/src/fuzzing.rs) keep
# it fixed. The corpus grows in fuzz/corpus/ (not committed); each run adds its CPU time to the
# figures in fuzz/README.md only when someone records them there.
#
#   FUZZ_SECONDS  budget per target (default 60)
#   FUZZ_TARGETS  space-separated subset (default: every target in fuzz/Cargo.toml)
#   FUZZ_TARGET_DIR  where the instrumented build goes (default ~/.cache/quiver/fuzz-target)
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes nightly flags (-Zsanitizer); the stable toolchain accepts them this way,
# so CI needs no second toolchain.
export RUSTC_BOOTSTRAP=1

# The instrumented build takes about ten minutes on two cores; it lives outside the checkout
# so a CI machine that keeps its home directory builds it once, not on every run.
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/quiver/fuzz-target}"
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
cargo fuzz build --target-dir "$target_dir"
for t in $targets; do
    mkdir -p "corpus/$t"
    echo "fuzz: $t for ${seconds}s"
    # -rss_limit_mb: a decoder that allocates without bound is a crash, not a slow run.
    # Regression inputs seed the corpus so known crashers are retried every run.
    if ! cargo fuzz run --target-dir "$target_dir" "$t" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        2> "corpus/$t.log"; then
        tail -n 60 "corpus/$t.log"
        echo "fuzz: $t crashed; the input is in fuzz/artifacts/$t/ — add it to fuzz/regressions/$t/" >&2
        exit 1
    fi
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|cov:" "corpus/$t.log" | tail -n 4
done
