#!/usr/bin/env bash
# `make demo`: start the Custobar sandbox, run `meltano run tap-custobar target-jsonl` against it,
# always stop the sandbox, then print what landed under output/. Safe to run again: the old
# output/*.jsonl files are removed first and the run is a --full-refresh (whole tables each time).
set -euo pipefail
cd "$(dirname "$0")/.."

CUSTOMERS="${DEMO_CUSTOMERS:-5000}"
PORT="${SANDBOX_PORT:-0}"  # 0: a free port, announced on the SANDBOX_URL= line
MELTANO=.meltano-venv/bin/meltano
PYTHON=.venv/bin/python

mkdir -p output
rm -f output/*.jsonl
sandbox_log="$(mktemp)"
"$PYTHON" -m tests.sandbox --port "$PORT" --customers "$CUSTOMERS" >"$sandbox_log" 2>&1 &
sandbox_pid=$!
stop_sandbox() {
    kill "$sandbox_pid" 2>/dev/null || true
    wait "$sandbox_pid" 2>/dev/null || true
    rm -f "$sandbox_log"
}
trap stop_sandbox EXIT

for _ in $(seq 1 300); do
    grep -q '^SANDBOX_URL=' "$sandbox_log" && grep -q '^SANDBOX_TOKEN=' "$sandbox_log" && break
    if ! kill -0 "$sandbox_pid" 2>/dev/null; then
        echo "the sandbox did not start:" >&2
        cat "$sandbox_log" >&2
        exit 1
    fi
    sleep 0.1
done
url="$(sed -n 's/^SANDBOX_URL=//p' "$sandbox_log" | head -n 1)"
token="$(sed -n 's/^SANDBOX_TOKEN=//p' "$sandbox_log" | head -n 1)"
if [ -z "$url" ] || [ -z "$token" ]; then
    echo "the sandbox announced no URL/token within 30 s" >&2
    exit 1
fi
echo "Sandbox with $CUSTOMERS customers at $url"

TAP_CUSTOBAR_BASE_URL="$url" \
TAP_CUSTOBAR_API_TOKEN="$token" \
TARGET_JSONL_DESTINATION_PATH=output \
TARGET_JSONL_DO_TIMESTAMP_FILE=false \
    "$MELTANO" --environment=sandbox run --full-refresh --state-id-suffix demo \
    tap-custobar target-jsonl

"$PYTHON" scripts/demo_summary.py output
