#!/usr/bin/env bash
# Run-log overhead: `monoquant quantize` of one checkpoint with and without the run log
# (hashing the input and the output, one SQLite insert), alternating so that machine load hits
# both alike. Prints the median wall time of each and the difference.
#   bench/runlog/overhead.sh MONOQUANT CHECKPOINT [PAIRS]
set -euo pipefail
mq=$1 model=$2 pairs=${3:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MONOQUANT_HOME=$work/home
now() { date +%s.%N; }
on=() off=()
for i in $(seq "$pairs"); do
	for mode in off on; do
		flag=--no-log
		[ "$mode" = on ] && flag=
		rm -f "$work/out.safetensors"
		t0=$(now)
		"$mq" quantize --model "$model" --out "$work/out.safetensors" --quiet $flag > /dev/null
		t=$(echo "$(now) - $t0" | bc -l)
		if [ "$mode" = on ]; then on+=("$t"); else off+=("$t"); fi
	done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_off=$(median "${off[@]}") m_on=$(median "${on[@]}")
echo "input: $model ($(stat -c %s "$model") bytes), $pairs pairs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "without log: median ${m_off}s  (${off[*]})"
echo "with log:    median ${m_on}s  (${on[*]})"
echo "overhead:    $(echo "($m_on - $m_off) / $m_off * 100" | bc -l | xargs printf '%.2f')%"
"$mq" runs list --log "$MONOQUANT_HOME/runs.sqlite" | tail -1
