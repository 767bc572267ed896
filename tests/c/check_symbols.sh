#!/bin/sh
# The library's exported mq_* symbols and the functions declared in include/monoquant.h (plus the
# test hooks of capi/monoquant_debug.h) must be the same set: nothing exported that is not
# declared, nothing declared that is missing.
# usage: check_symbols.sh path/to/libmonoquant.so path/to/monoquant.h [more headers...]
set -eu
lib=$1
shift
header="$*"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | awk '$2 == "T" && $3 ~ /^mq_/ { print $3 }' | sort -u >"$tmp/exported"
# Declarations are "MQ_API <type> <name>(", possibly with a pointer star glued to the name.
cat "$@" | grep -E '^MQ_API ' | sed -E 's/\(.*//; s/.*[ *]//' | sort -u >"$tmp/declared"
if [ ! -s "$tmp/declared" ] || [ ! -s "$tmp/exported" ]; then
    echo "FAIL: no symbols found (declared: $(wc -l <"$tmp/declared"), exported: $(wc -l <"$tmp/exported"))"
    exit 1
fi
status=0
for s in $(comm -23 "$tmp/exported" "$tmp/declared"); do
    echo "FAIL: $s is exported by $lib but not declared in $header"
    status=1
done
for s in $(comm -13 "$tmp/exported" "$tmp/declared"); do
    echo "FAIL: $s is declared in $header but not exported by $lib"
    status=1
done
[ $status -eq 0 ] && echo "ok: $(wc -l <"$tmp/declared") symbols agree"
exit $status
