#!/usr/bin/env bash
# The whole GPU check, run on the GPU machine from the folder that `cargo xtask bench --gpu`
# prepared (it needs no Rust there): the GPU tests against the CPU oracle, the benchmark on
# real weights, the CLI decoding on the GPU, compute-sanitizer memcheck, racecheck and
# initcheck, and, when the folder has them, the nvCOMP and DFloat11 anchors on the same bytes.
#
# usage: bash run.sh            logs and summary.txt in $OUT (default ./gpu-out)
# env:   BENCH_ARGS             extra gpu_bench options (e.g. "--settings 64x128:11:1 --quick")
#        SKIP_SANITIZERS=1      skip memcheck, racecheck and initcheck
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/bin
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
S=$OUT/summary.txt
: > "$S"
export WCODEC_TEST_DATA=$HERE/tests-data

step() {
    local name=$1
    shift
    local t0=$SECONDS
    "$@"
    local rc=$?
    echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$S"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >> "$S" 2>&1

# Correctness first: random and real tensors against the CPU oracle, damaged files.
step tests "$BIN/gpu_tests" --test-threads=1 --nocapture > "$OUT/tests.log" 2>&1
grep -E "^test |test result|panicked|damaged files" "$OUT/tests.log"

# GB/s and ratio per tensor class, tile and launch shape; one layer's latency; the tensors'
# bytes written as .bin files for the anchors.
# shellcheck disable=SC2086
step bench "$BIN/gpu_bench" "$HERE/data" --mb 512 --bins "$OUT/bins" --json "$OUT/bench.json" \
    ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
grep -E "^\||^device|copy" "$OUT/bench.log"

if [ -f "$HERE/anchors.py" ]; then
    site=$OUT/site
    step wheels python3 -m pip install -q --no-index --no-deps --target "$site" \
        "$HERE"/wheels/*.whl > "$OUT/wheels.log" 2>&1
    step anchors env PYTHONPATH="$site" DF11_PATH="$site" PYTHONUNBUFFERED=1 \
        python3 "$HERE/anchors.py" "$OUT/bins" 512 "$OUT/anchors.json" > "$OUT/anchors.log" 2>&1
    grep -E "ANS|DFloat11|copy" "$OUT/anchors.log" | cut -c1-200
fi

# The CLI end to end: compress on the CPU, decompress on the GPU, compare, time.
cli() {
    local w=$BIN/wcodec t=$OUT/cli
    rm -rf "$t" && mkdir -p "$t"
    "$w" compress -q --for-gpu "$HERE/data/minilm-int8.safetensors" -o "$t/m.wcz" &&
        "$w" decompress -q --device cuda "$t/m.wcz" -o "$t/m.safetensors" &&
        cmp "$t/m.safetensors" "$HERE/data/minilm-int8.safetensors" &&
        "$w" bench --device cuda --iters 20 "$t/m.wcz" &&
        "$w" bench --device cuda --load --iters 5 "$t/m.wcz"
}
step cli cli > "$OUT/cli.log" 2>&1
cat "$OUT/cli.log"

if [ -z "${SKIP_SANITIZERS:-}" ]; then
    step memcheck env WCODEC_GPU_QUICK=1 compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$BIN/gpu_tests" --test-threads=1 > "$OUT/memcheck.log" 2>&1
    grep -E "ERROR SUMMARY|test result" "$OUT/memcheck.log"
    step racecheck env WCODEC_GPU_QUICK=1 compute-sanitizer --tool racecheck --error-exitcode 9 \
        "$BIN/gpu_tests" --test-threads=1 many_tensors damaged tables_too_big bf16 compact field \
        > "$OUT/racecheck.log" 2>&1
    grep -E "RACECHECK SUMMARY|test result" "$OUT/racecheck.log"
    # No read of device memory nothing wrote: the compressed bytes go up window by window, the
    # outputs are never cleared.
    step initcheck env WCODEC_GPU_QUICK=1 compute-sanitizer --tool initcheck --error-exitcode 9 \
        "$BIN/gpu_tests" --test-threads=1 many_tensors bf16 field > "$OUT/initcheck.log" 2>&1
    grep -E "ERROR SUMMARY|test result" "$OUT/initcheck.log"
fi
cat "$S"
