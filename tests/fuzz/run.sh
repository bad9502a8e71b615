#!/usr/bin/env bash
# run.sh — build the libFuzzer targets with clang and run each for a while.
#
#   tests/fuzz/run.sh                    every target, 60 s each
#   FUZZ_SECONDS=600 tests/fuzz/run.sh   longer
#   tests/fuzz/run.sh cidr json          only these targets
#
# Environment:
#   FUZZ_SECONDS     seconds of fuzzing per target (default 60)
#   FUZZ_PARALLEL    targets fuzzed at once (default 1)
#   FUZZ_KEEP_GOING  1: libFuzzer fork mode that keeps fuzzing past crashes
#                    (-fork=1 -ignore_crashes=1), then replays each crash once
#                    and groups them by reason; the run still fails
#   FUZZ_BUILD_DIR   build directory (default build/fuzz)
#
# Everything generated stays under the build directory: corpus/TARGET (the
# seeds from tests/fuzz/corpus/TARGET plus what the fuzzer finds, kept across
# runs), artifacts/TARGET (crash-*, leak-*, timeout-*, oom-*) and
# logs/TARGET.log. Before fuzzing, every input in tests/fuzz/regressions/
# TARGET is run once.
#
# Exits 0 when no target crashed, leaked, timed out or ran out of memory, and
# no regression input failed; 1 otherwise; 2 on a build or usage error.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build/fuzz}
seconds=${FUZZ_SECONDS:-60}
parallel=${FUZZ_PARALLEL:-1}
keep_going=${FUZZ_KEEP_GOING:-0}
all_targets=(cidr ini json list admin bans proxy crowdsec geoip_csv mmdb takeover)

# Longest input per target. A CIDR is short. Rule and list files stay small
# so that an execution takes well under a millisecond; INI files may be
# longer so that the limits of 64 backends, 256 rule sets and 256 listeners
# are within reach (corpus/ini has a seed just past each). Admin requests
# may pass the 32 KiB a connection may use (431). A state file's lines are
# at most 1024 bytes: a few of them and one past the limit fit in 8 KiB.
# A PROXY header is at most 536 bytes; a little more leaves room for payload
# after it (every prefix is parsed too, so inputs stay short). A stream
# answer of a few dozen decisions fits in 16 KiB. A takeover list of some
# dozens of names fits in 2 KiB (the unit test covers one past its limit).
# A GeoIP CSV is a list file with three fields. A MaxMind DB seed is either
# a hand-made one (about 1 KiB) or one of MaxMind's test databases (up to
# 75 KiB; copied in from build/maxmind when fetched).
declare -A max_len=([cidr]=128 [ini]=16384 [json]=4096 [list]=4096 [admin]=40000 [bans]=8192
    [proxy]=600 [crowdsec]=16384 [geoip_csv]=4096 [mmdb]=80000 [takeover]=2048)

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    if [ -z "${max_len[$t]:-}" ]; then
        echo "run.sh: unknown target '$t' (targets: ${all_targets[*]})" >&2
        exit 2
    fi
done
case $seconds in '' | *[!0-9]*)
    echo "run.sh: FUZZ_SECONDS must be a whole number" >&2
    exit 2
    ;;
esac

echo "== build ($build)"
mkdir -p "$build/logs"
if ! cmake -S "$root" -B "$build" -DCG_FUZZ=ON -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/logs/configure.log" 2>&1; then
    cat "$build/logs/configure.log" >&2
    echo "run.sh: configure failed (CG_FUZZ needs clang and libclang-rt-dev)" >&2
    exit 2
fi
if ! cmake --build "$build" --target fuzz -j"$(nproc 2>/dev/null || echo 2)"; then
    echo "run.sh: build failed" >&2
    exit 2
fi

# The INI target writes its input to a file per execution, the admin target
# its configurations: give them a private directory on a tmpfs, removed at
# the end.
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
CG_FUZZ_TMPDIR=$(mktemp -d "$shm/condgate-fuzz.XXXXXX") || exit 2
export CG_FUZZ_TMPDIR
trap 'rm -rf -- "$CG_FUZZ_TMPDIR"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
# Symbolized reports: Debian's llvm-14 has llvm-symbolizer off the PATH.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && ! command -v llvm-symbolizer >/dev/null; then
    for s in /usr/lib/llvm-*/bin/llvm-symbolizer; do
        [ -x "$s" ] && export ASAN_SYMBOLIZER_PATH=$s
    done
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# regressions TARGET: run each saved input once; prints one line per failure.
regressions() {
    local t=$1 bin=$build/tests/fuzz/fuzz_$1 dir=$here/regressions/$1 bad=0 f
    [ -d "$dir" ] || return 0
    for f in "$dir"/*; do
        [ -f "$f" ] || continue
        if ! "$bin" -runs=1 -timeout=10 -rss_limit_mb=2048 "$f" \
            >"$build/logs/$t.regression.$(basename "$f").log" 2>&1; then
            echo "$t: regression FAILED: $f" \
                "(log: $build/logs/$t.regression.$(basename "$f").log)"
            tail -n 40 "$build/logs/$t.regression.$(basename "$f").log" | sed 's/^/    /'
            bad=1
        fi
    done
    return $bad
}

# why TARGET ARTIFACT: the reason a saved input fails, in one line: the
# broken invariant's location or the sanitizer's summary.
why() {
    "$build/tests/fuzz/fuzz_$1" -runs=1 -timeout=10 "$2" 2>&1 |
        grep -m1 -E '==fuzz== invariant broken at|^SUMMARY: [A-Za-z]+Sanitizer|ERROR: libFuzzer: (timeout|out-of-memory)' |
        sed -E 's/^==[0-9]+== ?//; s/^==fuzz== //'
}

# fuzz TARGET: fuzz for $seconds; writes logs/TARGET.log and
# logs/TARGET.result ("ok|FAIL execs cov artifacts").
fuzz() {
    local t=$1 bin=$build/tests/fuzz/fuzz_$1
    local corpus=$build/corpus/$t arts=$build/artifacts/$t log=$build/logs/$t.log
    local dict=() mode=() rc execs cov n status
    mkdir -p "$corpus" "$arts"
    cp -n "$here/corpus/$t"/* "$corpus"/ 2>/dev/null
    # MaxMind's test databases, when tests/data/fetch-maxmind.sh fetched them.
    [ "$t" = mmdb ] && cp -n "$root"/build/maxmind/libmaxminddb-*/t/maxmind-db/test-data/*.mmdb \
        "$corpus"/ 2>/dev/null
    [ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
    [ "$keep_going" = 1 ] && mode=(-fork=1 -ignore_crashes=1 -ignore_timeouts=0 -ignore_ooms=0)
    touch "$build/logs/$t.start"
    "$bin" "${mode[@]}" "${dict[@]}" -max_total_time="$seconds" -max_len="${max_len[$t]}" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$arts/" \
        "$corpus" >"$log" 2>&1
    rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    [ -z "$execs" ] && execs=$(sed -n 's/^#\([0-9][0-9]*\):* .*cov:.*/\1/p' "$log" | tail -n1)
    cov=$(sed -n 's/.* cov: \([0-9][0-9]*\).*/\1/p' "$log" | tail -n1)
    n=$(find "$arts" -type f -newer "$build/logs/$t.start" | wc -l)
    status=ok
    [ "$rc" -ne 0 ] || [ "$n" -gt 0 ] && status=FAIL
    echo "$status ${execs:-?} ${cov:-?} $n $rc" >"$build/logs/$t.result"
}

# fuzz_mmdb needs libmaxminddb: without it the build has no such target.
built=()
for t in "${targets[@]}"; do
    if [ -x "$build/tests/fuzz/fuzz_$t" ]; then
        built+=("$t")
    else
        echo "run.sh: fuzz_$t was not built (fuzz_mmdb needs libmaxminddb); skipped"
    fi
done
targets=("${built[@]}")

failed=0
echo "== regressions"
for t in "${targets[@]}"; do
    regressions "$t" || failed=1
done

echo "== fuzzing ${targets[*]} for ${seconds}s each (parallel $parallel)"
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$parallel" ]; then
        wait -n
        running=$((running - 1))
    fi
    fuzz "$t" &
    running=$((running + 1))
done
wait

echo "== results"
printf '%-6s %-6s %12s %8s %10s  %s\n' target status executions cov artifacts log
for t in "${targets[@]}"; do
    read -r status execs cov n rc <"$build/logs/$t.result"
    printf '%-6s %-6s %12s %8s %10s  %s\n' "$t" "$status" "$execs" "$cov" "$n" \
        "$build/logs/$t.log"
    if [ "$status" != ok ]; then
        failed=1
        [ "$n" -eq 0 ] && echo "       libFuzzer exited $rc; see the log"
        # Group this run's artifacts by reason (at most 200 replayed).
        find "$build/artifacts/$t" -type f -newer "$build/logs/$t.start" | head -n 200 |
            while read -r f; do
                printf '%s\t%s\n' "$(why "$t" "$f")" "$f"
            done | sort | awk -F'\t' '{ c[$1]++; if (!($1 in ex)) ex[$1] = $2 }
                END { for (r in c) printf "       %5d x %s\n               e.g. %s\n", c[r], r, ex[r] }'
        [ "$n" -gt 200 ] && echo "       ($((n - 200)) more artifacts not replayed)"
        echo "       last lines of $build/logs/$t.log:"
        tail -n 40 "$build/logs/$t.log" | sed 's/^/    /'
    fi
done
exit $failed
