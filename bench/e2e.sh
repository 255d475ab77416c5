#!/usr/bin/env bash
# e2e.sh — end-to-end speed of `adaptool convert --dtype bf16` and
# `adaptool scale --by 0.5` on a generated 1 GiB F32 LoRA adapter, next to cp
# of the same file (medians of RUNS runs, warm page cache).
#
#   bench/e2e.sh [RUNS] [WORKDIR]
#
# adaptool writes atomically and fsyncs its output, cp does not: the table
# shows cp alone and cp followed by `sync OUT` (the fair baseline).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
work=${2:-$(mktemp -d)}
mkdir -p "$work"
trap 'rm -rf "$work"/out* "$work"/in.safetensors "$work"/adaptool' EXIT

go build -o "$work/adaptool" ./cmd/adaptool

# 32 modules × (lora_A [1024,4096] + lora_B [4096,1024]) float32 = 1 GiB of data.
in="$work/in.safetensors"
nmod=32 r=1024 d=4096
tsize=$((r * d * 4))
header='{"__metadata__":{"format":"pt"}'
off=0
for ((i = 0; i < nmod; i++)); do
	for part in A B; do
		shape="[$r,$d]"
		[ $part = B ] && shape="[$d,$r]"
		header+=",\"base_model.model.model.layers.$i.self_attn.q_proj.lora_$part.weight\":{\"dtype\":\"F32\",\"shape\":$shape,\"data_offsets\":[$off,$((off + tsize))]}"
		off=$((off + tsize))
	done
done
header+='}'
while (( ${#header} % 8 != 0 )); do header+=' '; done
n=${#header}
{
	printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x00' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)))"
	printf '%s' "$header"
	# Random float32 data made finite: NaN and Inf need a top byte of
	# 0x7f/0xff, so those byte values are mapped to 0x3e/0xbe everywhere.
	head -c $off /dev/urandom | LC_ALL=C tr '\177\377' '\076\276'
} >"$in"
sync "$in"
ls -l "$in"

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
timeit() { # label command...
	local label=$1
	shift
	local ts=()
	for ((k = 0; k < runs; k++)); do
		rm -rf "$work"/out*
		local s e
		s=$(date +%s.%N)
		"$@" >/dev/null
		e=$(date +%s.%N)
		ts+=("$(echo "$e - $s" | bc -l)")
	done
	printf '%s\n' "${ts[@]}" | median >"$work/t.$label"
	printf '%-34s %8.3f s\n' "$label" "$(cat "$work/t.$label")"
}
cat "$in" >/dev/null # warm the page cache
timeit cp cp "$in" "$work/out.safetensors"
timeit cp+sync sh -c "cp '$in' '$work/out.safetensors' && sync '$work/out.safetensors'"
timeit convert_bf16 "$work/adaptool" convert --dtype bf16 "$in" -o "$work/out.safetensors" --quiet
timeit convert_f16 "$work/adaptool" convert --dtype f16 "$in" -o "$work/out.safetensors" --quiet
timeit convert_f8_e4m3 "$work/adaptool" convert --dtype f8_e4m3 "$in" -o "$work/out.safetensors" --quiet
if "$work/adaptool" scale --help >/dev/null 2>&1; then
	timeit scale_0.5 "$work/adaptool" scale --by 0.5 "$in" -o "$work/out.safetensors" --quiet
fi
cp_t=$(cat "$work/t.cp")
cps_t=$(cat "$work/t.cp+sync")
for l in convert_bf16 convert_f16 convert_f8_e4m3 scale_0.5; do
	[ -f "$work/t.$l" ] || continue
	printf '%-16s %.2f× cp   %.2f× cp+sync\n' "$l" "$(echo "$(cat "$work/t.$l") / $cp_t" | bc -l)" "$(echo "$(cat "$work/t.$l") / $cps_t" | bc -l)"
done
