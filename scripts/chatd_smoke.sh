#!/usr/bin/env bash
# Acceptance smoke for chatd (DESIGN §7).
#
# Starts a fake Ollama and chatd in dev mode (no API keys: only local Ollama is
# registered) on loopback ports, runs six checks against chatd, and stops both.
#
#   bash scripts/chatd_smoke.sh
#   PYTHON=.venv/bin/python CHATD=.venv/bin/chatd bash scripts/chatd_smoke.sh
#
# Prints PASS/FAIL per check and "k/6 PASS"; exits non-zero unless all pass.
set -euo pipefail

PYTHON=${PYTHON:-python3}
CHATD=${CHATD:-chatd}
read -r -a chatd_cmd <<<"$CHATD"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/chatd-smoke.XXXXXX")
fake_pid=""
chatd_pid=""

stop() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop "$chatd_pid"
    stop "$fake_pid"
    rm -rf "$workdir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "chatd_smoke: $*" >&2
    exit 1
}

show_log() {
    echo "--- $1" >&2
    tail -n 30 "$2" >&2 || true
}

# ----- fake Ollama: prints its URL on one line once it is listening

PYTHONUNBUFFERED=1 "$PYTHON" -m tests.fakes.ollama --port 0 --models qwen3:8b \
    >"$workdir/fake.out" 2>"$workdir/fake.err" &
fake_pid=$!

fake_url=""
for _ in $(seq 100); do
    fake_url=$(head -n 1 "$workdir/fake.out")
    [ -n "$fake_url" ] && break
    kill -0 "$fake_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ ! "$fake_url" =~ ^http://127\.0\.0\.1:[0-9]+$ ]]; then
    show_log "fake Ollama stderr" "$workdir/fake.err"
    die "the fake Ollama did not report its URL (got '${fake_url}')"
fi

# ----- chatd in dev mode on a free loopback port

port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

cat >"$workdir/lakehouse.toml" <<EOF
[chatd]
ollama_url = "$fake_url"
EOF

env -u OLLAMA_CLOUD_KEY -u OPENROUTER_API_KEY -u OPENCODE_API_KEY -u KIMI_API_KEY -u LAKEHOUSE_CONFIG \
    "${chatd_cmd[@]}" --config "$workdir/lakehouse.toml" --bind "127.0.0.1:$port" \
    >"$workdir/chatd.log" 2>&1 &
chatd_pid=$!

ready=""
for _ in $(seq 100); do
    if curl -fsS --max-time 1 "$base/v1/chat/health" >/dev/null 2>&1; then
        ready=1
        break
    fi
    kill -0 "$chatd_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ready" ]; then
    show_log "chatd log" "$workdir/chatd.log"
    die "chatd did not become ready on $base"
fi

# ----- helpers

status=""

# call METHOD PATH [JSON]: sets $status; body and headers land in $workdir.
call() {
    local args=(-sS --max-time 30 -o "$workdir/body" -D "$workdir/headers" -w '%{http_code}' -X "$1")
    if [ $# -ge 3 ]; then
        args+=(-H 'content-type: application/json' --data-binary "$3")
    fi
    status=$(curl "${args[@]}" "$base$2") || status="curl failed"
}

# verify EXPR: a Python expression over status, b (the JSON body or None) and h (headers).
verify() {
    "$PYTHON" - "$1" "$status" "$workdir/body" "$workdir/headers" <<'PY'
import json
import sys

expr, status, body_path, headers_path = sys.argv[1:5]
try:
    b = json.loads(open(body_path, "rb").read())
except (OSError, ValueError):
    b = None
h = {}
try:
    for line in open(headers_path, encoding="latin-1"):
        name, sep, value = line.partition(":")
        if sep:
            h[name.strip().lower()] = value.strip()
except OSError:
    pass
try:
    ok = bool(eval("(" + expr + ")", {}, {"status": int(status) if status.isdigit() else 0, "b": b, "h": h}))
except Exception:
    ok = False
sys.exit(0 if ok else 1)
PY
}

got() {
    local body=""
    [ -f "$workdir/body" ] && body=$(head -c 300 "$workdir/body" | tr '\n' ' ')
    local model
    model=$(grep -i '^x-chatd-model:' "$workdir/headers" 2>/dev/null | tr -d '\r' || true)
    echo "HTTP $status${model:+, $model}: $body"
}

passed=0
report() {  # report N DESCRIPTION EXPR
    if verify "$3"; then
        echo "PASS $1: $2"
        passed=$((passed + 1))
    else
        echo "FAIL $1: $2 ($(got))"
    fi
}

ask='"messages": [{"role": "user", "content": "Say hello."}]'

# ----- the six checks

call GET /v1/chat/providers
report 1 "/v1/chat/providers lists exactly one provider, ollama" \
    "status == 200 and [p['name'] for p in b['providers']] == ['ollama']"

call POST /v1/chat "{\"model\": \"qwen3:8b\", $ask}"
report 2 "bare qwen3:8b → 200 from ollama with content, token counts and latency" \
    "status == 200 and b['provider'] == 'ollama' and isinstance(b['content'], str) and b['content'].strip() != ''
     and b['input_tokens'] > 0 and b['output_tokens'] > 0 and isinstance(b['latency_ms'], (int, float))"

call POST /v1/chat "{\"model\": \"ollama/qwen3:8b\", $ask}"
report 3 "ollama/qwen3:8b → 200, prefix stripped: upstream model qwen3:8b" \
    "status == 200 and b['provider'] == 'ollama' and b['model'] == 'qwen3:8b' and h.get('x-chatd-model') == 'qwen3:8b'"

call POST /v1/chat "{\"model\": \"kimi-k2.6:cloud\", $ask}"
report 4 "kimi-k2.6:cloud with ollama_cloud not registered → 404" \
    "status == 404 and isinstance(b['error']['message'], str)"

call POST /v1/chat "{\"model\": \"unknown/m\", $ask}"
report 5 "unknown/m → default ollama, unchanged, which does not know it → 502" \
    "status == 502 and isinstance(b['error']['message'], str)"

call POST /v1/chat "{$ask}"
report 6 "body without model → 400" \
    "status == 400 and isinstance(b['error']['message'], str)"

echo "$passed/6 PASS"
[ "$passed" -eq 6 ]
