#!/usr/bin/env bash
# Prints the README table of the atz codec: ratio, wall MB/s and cpu-MB/s
# (MB per CPU-second of the process: the per-core figure on a shared
# machine), medians of -count runs, for the codec alone and the full
# pack/unpack path next to plain zstd (Default, Best) and copy() measured in
# the same run, on generated N(0, 0.02) BF16 and FP32 tensors
# (64 MiB) and on ../shared/corpus (skipped when absent).
#
#   bench/compress.sh            # -count 5 -benchtime 3x
#   COUNT=3 BENCHTIME=1x bench/compress.sh
#
# Raw `go test -bench` output is kept in $OUT (default /tmp/atz-bench.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-3x}
OUT=${OUT:-/tmp/atz-bench.txt}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" >&2
go test -run '^$' -bench 'BenchmarkPack|BenchmarkCorpus|BenchmarkCodec' -benchtime "$BENCHTIME" -count "$COUNT" ./format/atz | tee "$OUT" >&2
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" >&2
awk '
/^Benchmark(Pack|Corpus|Codec)\// {
	name = $1; codec = (name ~ /^BenchmarkCodec/)
	sub(/^Benchmark(Pack|Corpus|Codec)\//, "", name); sub(/-[0-9]+$/, "", name)
	split(name, p, "/"); input = p[1]; method = (codec ? "codec-" p[2] : p[2])
	for (i = 2; i <= NF; i++) {
		if ($(i+1) == "MB/s") mbs[input, method] = mbs[input, method] " " $i
		if ($(i+1) == "cpu-MB/s") cpu[input, method] = cpu[input, method] " " $i
		if ($(i+1) == "ratio") rat[input, method] = rat[input, method] " " $i
	}
	if (!((input, method) in seen)) { seen[input, method] = 1; order[++n] = input SUBSEP method }
}
function median(s,    a, k, i, j, t) {
	k = split(s, a, " "); if (k == 0) return ""
	for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
END {
	print "| input | method | ratio | MB/s | cpu-MB/s | copy() MB/s, same run |"
	print "|---|---|---|---|---|---|"
	for (x = 1; x <= n; x++) {
		split(order[x], q, SUBSEP); in_ = q[1]; m = q[2]
		if (m ~ /copy$/) continue
		cp = (m ~ /^codec-/) ? "codec-copy" : "copy"
		r = median(rat[in_, m])
		if (r == "") { # decompress rows share the ratio of their compress row
			mm = m; sub(/unpack.*/, "pack-par", mm); sub(/-decompress/, "-compress", mm); sub(/decode/, "encode", mm)
			r = median(rat[in_, mm])
		}
		printf "| %s | %s | %s | %.0f | %.0f | %.0f |\n", in_, m, (r == "" ? "" : sprintf("%.3f", r)), median(mbs[in_, m]), median(cpu[in_, m]), median(mbs[in_, cp])
	}
}' "$OUT"
