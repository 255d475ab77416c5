#!/usr/bin/env bash
# e2e.sh — end-to-end speed of `adaptool convert --dtype bf16` and
# `adaptool scale --by 0.5` on a generated 1 GiB F32 LoRA adapter, side by
# side with cp of the same file.
#
#   bench/e2e.sh [ROUNDS] [WORKDIR]
#
# Each round runs every command once, in an order rotated from round to
# round, on a warm page cache, after `sync` (so no command pays for the previous one's dirty
# pages) and with the output removed. The table gives, per command, the
# median wall time over the rounds and the median of its per-round ratios
# to cp and to cp + sync (shared VMs drift, so a command is compared with
# the cp of its own round), then its best time and the ratios of best to
# best (minima resist the noise: this VM is sometimes slow to hand back
# pages just freed, which can triple any single run, cp's included). Rows:
#   cp, cp+sync          the baselines (cp does not sync; adaptool does)
#   convert_bf16, scale  adaptool as shipped: output synced to disk
#   ..._nosync           with --no-sync: no fsync, as cp
#   ..._cold             ADAPTOOL_DIGEST_CACHE=off: the input's sha256 for
#                        provenance is computed again (the first run on a file)
# A WORKDIR given on the command line keeps the generated input for reuse.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-8}
work=${2:-$(mktemp -d)}
mkdir -p "$work"
if [ $# -ge 2 ]; then
	trap 'rm -rf "$work"/out* "$work"/adaptool' EXIT
else
	trap 'rm -rf "$work"' EXIT
fi

go build -o "$work/adaptool" ./cmd/adaptool

# 32 modules × (lora_A [1024,4096] + lora_B [4096,1024]) float32 = 1 GiB of data.
in="$work/in.safetensors"
if [ ! -s "$in" ]; then
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
	while ((${#header} % 8 != 0)); do header+=' '; done
	n=${#header}
	{
		printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x00' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)))"
		printf '%s' "$header"
		# Random float32 data made finite: NaN and Inf need a top byte of
		# 0x7f/0xff, so those byte values are mapped to 0x3e/0xbe everywhere.
		head -c $off /dev/urandom | LC_ALL=C tr '\177\377' '\076\276'
	} >"$in.tmp"
	mv "$in.tmp" "$in"
	sleep 3 # older than the digest cache's racy window (SPEC §1.2)
fi
sync "$in"
ls -l "$in"
out="$work/out.safetensors"
a="$work/adaptool"

labels=(cp cp+sync convert_bf16 convert_bf16_nosync convert_bf16_cold scale scale_nosync scale_cold)
run() { # label
	case $1 in
	cp) cp "$in" "$out" ;;
	cp+sync) cp "$in" "$out" && sync "$out" ;;
	convert_bf16) "$a" convert --dtype bf16 "$in" -o "$out" --quiet ;;
	convert_bf16_nosync) "$a" convert --dtype bf16 --no-sync "$in" -o "$out" --quiet ;;
	convert_bf16_cold) ADAPTOOL_DIGEST_CACHE=off "$a" convert --dtype bf16 "$in" -o "$out" --quiet ;;
	scale) "$a" scale --by 0.5 "$in" -o "$out" --quiet ;;
	scale_nosync) "$a" scale --by 0.5 --no-sync "$in" -o "$out" --quiet ;;
	scale_cold) ADAPTOOL_DIGEST_CACHE=off "$a" scale --by 0.5 "$in" -o "$out" --quiet ;;
	esac >/dev/null 2>&1
}

cat "$in" >/dev/null # warm the page cache
run scale            # records the input's digest in the digest cache
declare -A ms
for ((k = 0; k < rounds; k++)); do
	# Rotate the order each round, so that every command follows every
	# other equally often (this VM is slow to hand back pages just freed).
	n=${#labels[@]}
	for ((j = 0; j < n; j++)); do
		l=${labels[(j + k) % n]}
		rm -f "$out"
		sync
		s=$(date +%s%N)
		run "$l"
		e=$(date +%s%N)
		ms[$l,$k]=$(((e - s) / 1000000))
	done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
best() { tr ' ' '\n' | grep . | sort -g | head -1; }
bestof() { # label
	local ts=""
	for ((k = 0; k < rounds; k++)); do ts+="${ms[$1,$k]} "; done
	echo "$ts" | best
}
cpbest=$(bestof cp)
cpsbest=$(bestof cp+sync)
printf '%-22s %9s %9s %12s %9s %9s %12s   %s\n' command median "÷ cp" "÷ cp+sync" best "÷ cp" "÷ cp+sync" "all rounds (ms)"
for l in "${labels[@]}"; do
	ts="" r1="" r2=""
	for ((k = 0; k < rounds; k++)); do
		ts+="${ms[$l,$k]} "
		r1+="$(echo "${ms[$l,$k]} / ${ms[cp,$k]}" | bc -l) "
		r2+="$(echo "${ms[$l,$k]} / ${ms[cp+sync,$k]}" | bc -l) "
	done
	b=$(echo "$ts" | best)
	printf '%-22s %6d ms %8.2f× %11.2f× %6d ms %8.2f× %11.2f×   %s\n' "$l" "$(echo "$ts" | median)" "$(echo "$r1" | median)" "$(echo "$r2" | median)" \
		"$b" "$(echo "$b / $cpbest" | bc -l)" "$(echo "$b / $cpsbest" | bc -l)" "$ts"
done
