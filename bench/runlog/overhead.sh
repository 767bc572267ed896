#!/usr/bin/env bash
# Run-log overhead: `monoquant quantize` of one checkpoint with and without the run log
# (hashing the input and the output, one SQLite insert), alternating so that machine load hits
# both alike. Prints the median wall time and CPU time (user+sys, less sensitive to other
# processes on a shared machine) of each and the differences. The first logged run hashes the
# input (later ones find it in the log's cache): it is reported apart.
#   bench/runlog/overhead.sh MONOQUANT CHECKPOINT [PAIRS]
set -euo pipefail
mq=$1 model=$2 pairs=${3:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MONOQUANT_HOME=$work/home
on=() off=() con=() coff=() first=
command -v /usr/bin/time > /dev/null || { echo "needs /usr/bin/time (GNU time)"; exit 2; }
sleep 3 # the input's ctime must be older than the cache's racy window
for i in $(seq "$pairs"); do
	for mode in off on; do
		flag=--no-log
		[ "$mode" = on ] && flag=
		rm -f "$work/out.safetensors"
		/usr/bin/time -f "%e %U %S" -o "$work/t" "$mq" quantize --model "$model" --out "$work/out.safetensors" --quiet $flag > /dev/null
		read -r t u s < "$work/t"
		c=$(echo "$u + $s" | bc -l)
		if [ "$mode" = on ] && [ -z "$first" ]; then first="$t s wall, $c s CPU"; continue; fi
		if [ "$mode" = on ]; then on+=("$t"); con+=("$c"); else off+=("$t"); coff+=("$c"); fi
	done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
pct() { echo "($1 - $2) / $2 * 100" | bc -l | xargs printf '%.1f'; }
m_off=$(median "${off[@]}") m_on=$(median "${on[@]}") c_off=$(median "${coff[@]}") c_on=$(median "${con[@]}")
echo "input: $model ($(stat -c %s "$model") bytes), $pairs pairs, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "first logged run (hashes the input): $first"
echo "without log: median ${m_off} s wall, ${c_off} s CPU  (wall: ${off[*]})"
echo "with log:    median ${m_on} s wall, ${c_on} s CPU  (wall: ${on[*]})"
echo "overhead:    $(pct "$m_on" "$m_off")% wall, $(pct "$c_on" "$c_off")% CPU"
"$mq" runs list --log "$MONOQUANT_HOME/runs.sqlite" | tail -1
