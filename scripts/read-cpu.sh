#!/usr/bin/env bash
# What a read costs (docs/performance.md, issue 24): starts `BIN serve` on SQLite, drives it
# with `emrsync bench --scenario read --clients 16` for SECS (15) seconds, and prints reads/s,
# p99 and the CPU a read took: the whole machine's, the server's (from /proc/<pid>/stat; its
# SQLite writer thread apart, which in a read load writes only the audit trail, and the 2,000
# Patients the load tool creates first) and the load tool's. CPU a read is steadier on a
# shared VM than reads/s. To measure what auditing reads costs, build a measurement binary
# whose `ops::audit::http::record` returns before queueing when an environment variable is
# set (never committed: it would switch the audit off), and run it with and without
# NO_READ_AUDIT=1, alternating. SERVE_ARGS are given to `serve` ("--audit-flush-ms 1000").
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
: "${BIN:?BIN=path/to/emrsync}"
W=$(mktemp -d /tmp/read-cpu.XXXXXX)
S=""
trap '[ -n "$S" ] && kill $S 2>/dev/null; rm -rf "$W"' EXIT
port=$(free_port)
mllp=$(free_port)
[ -n "${NO_READ_AUDIT:-}" ] && export EMRSYNC_MEASURE_NO_READ_AUDIT=1
"$BIN" serve --listen "127.0.0.1:$port" --mllp "127.0.0.1:$mllp" --data-dir "$W/d" ${SERVE_ARGS:-} >"$W/log" 2>&1 &
S=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
EMRSYNC_BENCH_TOKEN=$("$BIN" token --data-dir "$W/d" --base-url "http://127.0.0.1:$port/fhir" \
    --scope "system/*.cruds" --expires 2h)
export EMRSYNC_BENCH_TOKEN
machine() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
server() { awk '{print $14+$15}' "/proc/$S/stat"; }
# the SQLite writer thread: in a read load, what it does is write the audit trail
writer() {
    for t in /proc/"$S"/task/*; do
        if [ "$(cat "$t/comm")" = emrsync-writer ]; then awk '{print $14+$15}' "$t/stat"; fi
    done | awk '{s += $1} END {print s + 0}'
}
m0=$(machine)
s0=$(server)
w0=$(writer)
out=$(/usr/bin/time -f "BENCHCPU %U %S" "$BIN" bench --url "http://127.0.0.1:$port/fhir" --label x \
    --scenario read --clients 16 --seconds "${SECS:-15}" 2>&1)
sleep 0.5 # the audit's last flush
m1=$(machine)
s1=$(server)
w1=$(writer)
bench=$(echo "$out" | awk '/^BENCHCPU/{print int(($2+$3)*100)}')
echo "$out" | awk -v m=$((m1 - m0)) -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v b="$bench" '/^read /{
    n=$2; printf "reads/s %s  p99 %s ms  CPU a read: machine %.1f µs, server %.1f (its writer thread %.1f), load tool %.1f\n",
    $3, $7, m*10000/n, s*10000/n, w*10000/n, b*10000/n}'
