#!/usr/bin/env bash
# make demo: starts demo-server, then http-profiler with its live view, then traffic-gen
# for DURATION seconds (or until Ctrl-C); the JSON lines land in output/events.jsonl.
# Ends with a reconciliation of requests sent against exchanges captured, and stops
# everything it started, whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
PORT=${DEMO_PORT:-8080}
RPS=${DEMO_RPS:-20}
BIN=target/release
OUT=output/events.jsonl
SUMMARY=output/traffic-summary.json
LOG=output/profiler.log

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: http-profiler loads eBPF probes: run as root (sudo make demo)" >&2
    exit 2
fi
mkdir -p output
chmod 700 output
rm -f "$OUT" "$SUMMARY" "$LOG"

server= profiler= interrupted=0
stop() {
    [ -n "$profiler" ] && kill -TERM "$profiler" 2>/dev/null && wait "$profiler" 2>/dev/null
    [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
    profiler= server=
}
trap stop EXIT
trap 'interrupted=1' INT TERM

# Server and profiler get sessions of their own: Ctrl-C goes to traffic-gen, and this
# script stops the others in order, so the profiler sees the last exchanges.
setsid "$BIN/demo-server" --listen "127.0.0.1:$PORT" 2>>"$LOG" &
server=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { echo "demo: demo-server did not start (port $PORT taken? set DEMO_PORT)" >&2; cat "$LOG" >&2; exit 1; }
    sleep 0.1
done

setsid "$BIN/http-profiler" --output "$OUT" --port "$PORT" --pretty --max-body-bytes 262144 2>>"$LOG" &
profiler=$!
for _ in $(seq 300); do
    grep -q capturing "$LOG" 2>/dev/null && break
    kill -0 "$profiler" 2>/dev/null || { echo "demo: http-profiler did not start:" >&2; cat "$LOG" >&2; exit 1; }
    sleep 0.1
done
echo "demo: demo-server on http://127.0.0.1:$PORT, http-profiler writing $OUT; traffic for ${DURATION}s (Ctrl-C stops early)" >&2

"$BIN/traffic-gen" --target "http://127.0.0.1:$PORT" --duration "$DURATION" --rps "$RPS" --json-summary "$SUMMARY"
traffic_status=$?
sleep 0.5
stop
grep -v capturing "$LOG" | grep -v '^demo-server: listening' >&2 || true

python3 - "$OUT" "$SUMMARY" "$interrupted" <<'PY'
import json, sys
out, summary_path, interrupted = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
summary = json.load(open(summary_path))
lines = [json.loads(l) for l in open(out)]
client = [l for l in lines if l["comm"] == "traffic-gen" and l["direction"] == "recv" and "status_code" in l and not l["incomplete"]]
server = [l for l in lines if l["comm"] == "demo-server" and l["direction"] == "send" and "status_code" in l and not l["incomplete"]]
print(f"demo: JSON lines in {out} ({len(lines)} lines)")
ok = len(client) == summary["sent"] == len(server)
print(f"demo: reconciliation: traffic-gen sent {summary['sent']} requests; captured {len(client)} exchanges "
      f"(client side) and {len(server)} (server side): {'captured == sent' if ok else 'MISMATCH'}")
if not ok and interrupted:
    print("demo: interrupted: requests in flight at Ctrl-C may be missing")
sys.exit(0 if ok or interrupted else 1)
PY
reconciled=$?
[ "$traffic_status" -eq 0 ] || { echo "demo: traffic-gen reported errors" >&2; exit 1; }
exit $reconciled
