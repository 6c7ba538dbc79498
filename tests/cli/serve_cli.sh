#!/usr/bin/env bash
# `endless serve` as a user starts it: help, the banner with the port, loopback by default, a
# completion and a session over curl, the API key, SIGTERM stops it cleanly, and a restart
# restores the session. (The HTTP behaviour in depth is tested by server_tests.)
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
"$ENDLESS_BIN" --help 2>&1 | grep -q '^  serve' ||
  { echo "SKIP: this build has no server (ENDLESS_SKIP_MODULES names it)"; exit 77; }

"$ENDLESS_BIN" serve --help >"$TMP/help" 2>&1 || fail "serve --help exits non-zero"
for opt in --host --port --api-key --sessions-dir --parallel --cache --sink --window --chat-template \
           --max-tokens --max-sessions --max-queue --max-body --snapshot-every; do
  grep -q -- "$opt" "$TMP/help" || fail "serve --help does not list $opt"
done
"$ENDLESS_BIN" serve --port 70000 >"$TMP/bad" 2>&1 && fail "--port 70000 was accepted"
"$ENDLESS_BIN" serve --parallel 0 >"$TMP/bad" 2>&1 && fail "--parallel 0 was accepted"

"$ENDLESS_BIN" synth --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --vocab 320 -o "$TMP/m.gguf" >/dev/null

pid=
start() {  # start ARGS...: runs the server, sets $pid and $base
  "$ENDLESS_BIN" serve -m "$TMP/m.gguf" -t 1 --port 0 --sessions-dir "$TMP/sessions" "$@" 2>"$TMP/err" &
  pid=$!
  for _ in $(seq 1 500); do
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$TMP/err" | sed 's/.*://') && [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$TMP/err"; fail "the server exited at start"; }
    sleep 0.02
  done
  [ -n "${port:-}" ] || fail "no 'listening on' banner"
  base="http://127.0.0.1:$port"
}
stop() {
  kill -TERM "$pid"
  wait "$pid" || fail "the server did not exit 0 on SIGTERM"
  grep -q "stopped" "$TMP/err" || fail "no 'stopped' line"
  pid=
}
trap 'if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi; rm -rf "$TMP"' EXIT

start --api-key k123
[ "$(curl -s "$base/health")" = '{"status":"ok"}' ] || fail "/health"
code=$(curl -s -o "$TMP/out" -w '%{http_code}' "$base/v1/models")
[ "$code" = 401 ] || fail "/v1/models without the key gave $code"
grep -q '"invalid_api_key"' "$TMP/out" || fail "401 without OpenAI's error object"
auth=(-H "Authorization: Bearer k123")
curl -s "${auth[@]}" "$base/v1/models" | grep -q '"id":"m"' || fail "/v1/models with the key"
curl -s "${auth[@]}" "$base/v1/completions" -d '{"prompt":"Hello","max_tokens":5,"temperature":0,"ignore_eos":true}' \
  >"$TMP/c1" || fail "completion"
grep -q '"completion_tokens":5' "$TMP/c1" || { cat "$TMP/c1"; fail "completion usage"; }
curl -sN "${auth[@]}" "$base/v1/completions" -d '{"prompt":"Hello","max_tokens":5,"stream":true}' >"$TMP/s1"
tail -c 20 "$TMP/s1" | grep -q 'data: \[DONE\]' || fail "the stream does not end with [DONE]"
curl -s "${auth[@]}" "$base/v1/sessions" -d '{"id":"tail","system":"A log."}' | grep -q '"id":"tail"' || fail "session create"
for i in 1 2 3; do
  curl -s "${auth[@]}" "$base/v1/sessions/tail/append" -d "{\"text\":\"line $i\\n\"}" | grep -q '"session.append"' ||
    fail "append $i"
done
curl -s "${auth[@]}" "$base/v1/sessions/tail/generate" -d '{"max_tokens":4,"temperature":0}' | grep -q '"session":"tail"' ||
  fail "session generate"
seen=$(curl -s "${auth[@]}" "$base/v1/sessions/tail" | grep -o '"tokens_seen":[0-9]*')
stop

# Loopback only by default: the banner says 127.0.0.1; a restart restores the session as it was.
start
grep -q "(1 restored)" "$TMP/err" || { cat "$TMP/err"; fail "the session was not restored"; }
[ "$(curl -s "$base/v1/sessions/tail" | grep -o '"tokens_seen":[0-9]*')" = "$seen" ] || fail "tokens_seen changed over a restart"
curl -s "$base/v1/sessions/tail/transcript" | grep -q 'line 3' || fail "transcript after restart"
stop
echo "all serve checks passed"
