#!/bin/bash
# Runs a benchmark command in its own session, hence its own scheduler autogroup, at autogroup
# nice -20 and nice -20, so that on a machine shared with other builds (load average > 2 on 2
# cores) the measured process gets the cores ahead of them for its duration; the libraries
# compared run inside the same command, so they are measured under the same conditions.
# Needs root (or CAP_SYS_NICE); without it the command runs at the normal priority.
#   bench/prio.sh .venv/bin/python bindings/python/bench/bench_histogram_alone.py mq
exec setsid bash -c 'echo -20 > /proc/self/autogroup 2>/dev/null
if nice -n -20 true 2>/dev/null; then exec nice -n -20 "$@"; else exec "$@"; fi' _ "$@"
