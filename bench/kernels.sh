#!/usr/bin/env bash
# kernels.sh — one table of ops/kernels throughput: pure-Go twin (-tags noasm)
# vs the default fast path vs copy() of the same bytes, medians of COUNT runs.
#
#   bench/kernels.sh [COUNT] [BENCHTIME] [FILTER]
#   bench/kernels.sh 5 0.5s 'Kernels/(Axpy|Scale)/256MiB|RankUpdate'
#
# GB/s counts bytes read + written (median of the runs' means). "x-copy" is
# the benchmark's own metric: the fastest kernel call over the fastest copy()
# of the same number of bytes, interleaved in the same run (minima resist
# the noise of a shared machine); "fast/twin" is the speed-up of the
# assembly. The machine should be quiet: on a shared 2-core box expect ±30%.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5}
benchtime=${2:-0.5s}
filter=${3:-'Kernels|RankUpdate'}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go test -run '^$' -bench "$filter" -count "$count" -benchtime "$benchtime" ./ops/kernels/ >"$tmp/fast.txt"
go test -tags noasm -run '^$' -bench "$filter" -count "$count" -benchtime "$benchtime" ./ops/kernels/ >"$tmp/twin.txt"
impl=$(go test -run '^TestImpl$' -v ./ops/kernels/ | sed -n 's/.*active \([a-z0-9]*\).*/\1/p' | head -1)

# medians FILE FIELD-UNIT → "name median" lines
medians() {
	awk -v unit="$2" '/^Benchmark/ {
		name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 2; i < NF; i++) if ($(i+1) == unit) print name, $i
	}' "$1" | sort -k1,1 -k2,2g | awk '
		function flush() { if (n) print prev, v[int((n+1)/2)] }
		$1 != prev { flush(); prev = $1; n = 0 }
		{ v[++n] = $2 }
		END { flush() }'
}
medians "$tmp/twin.txt" MB/s >"$tmp/twin.mbs"
medians "$tmp/fast.txt" MB/s >"$tmp/fast.mbs"
medians "$tmp/fast.txt" x-copy >"$tmp/fast.xc"
medians "$tmp/twin.txt" x-copy >"$tmp/twin.xc"
medians "$tmp/fast.txt" copy-GB/s >"$tmp/copy.gbs"

printf 'ops/kernels on %s, fast path %s, medians of %s runs (GB/s = bytes read+written per second)\n' \
	"$(go env GOARCH)" "$impl" "$count"
printf 'twin, fast: GB/s (median of the runs'"'"' means); copy: fastest copy() GB/s in the fast run;\n'
printf 'x-copy: fastest kernel call / fastest copy() of the same bytes, interleaved (median of runs)\n'
printf '%-28s %9s %9s %9s %9s %9s %9s\n' kernel/size twin fast copy fast/twin "twin x-cp" "fast x-cp"
join "$tmp/fast.mbs" "$tmp/twin.mbs" | join - "$tmp/copy.gbs" | join - "$tmp/fast.xc" | join - "$tmp/twin.xc" |
	awk '{ printf "%-28s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", $1, $3/1000, $2/1000, $4, $2/$3, $6, $5 }'
