#!/usr/bin/env bash
# infllm's cache options on the command line: the defaults are the setting of docs/streaming.md
# (3x64 at distance 200, keys scoring with parts, half-life, whitening, consensus from layer 0,
# scored every 8 tokens); --mem-score query turns the keys-only settings off unless given after
# it; --no-mem-key-whiten and --no-mem-consensus turn those two off.
source "$(dirname "$0")/lib.sh"

"$ENDLESS_BIN" synth --dim 64 --layers 3 --heads 4 --kv-heads 2 --ff 128 --vocab 300 --seed 3 -t 1 \
  -o "$TMP/m.gguf" >/dev/null 2>&1 || fail "synth failed"
for i in $(seq 1 200); do echo "line $i of a text that goes on and on, word $((i * 7 % 13))"; done >"$TMP/t.txt"

policy() {  # the first line of a short stream's report: the policy's description
  "$ENDLESS_BIN" perplexity --stream -m "$TMP/m.gguf" -f "$TMP/t.txt" -t 1 --cache infllm --sink 4 \
    --window 512 --max-tokens 1500 --segment 1500 "$@" 2>"$TMP/err" | head -1 | sed 's/ PPL = .*//'
}
expect() {  # wanted description, then the options
  local want=$1; shift
  local got
  got=$(policy "$@") || fail "$* exited non-zero: $(cat "$TMP/err")"
  [ "$got" = "$want" ] || fail "with '$*': got '$got', expected '$want'"
}

expect "infllm 4+508 top 3x64 r4 from layer 1 keys 64 parts 4 every 8 half-life 16 whiten consensus from 0 at 200"
expect "infllm 4+508 top 3x64 r4 from layer 1 query every 8 at 200" --mem-score query
expect "infllm 4+508 top 3x64 r4 from layer 1 keys 64 parts 4 every 8 half-life 16 at 200" \
  --no-mem-key-whiten --no-mem-consensus --mem-consensus-from -1
if policy --mem-score query --mem-key-whiten >/dev/null; then :; fi
grep -q "keys only" "$TMP/err" || fail "--mem-score query --mem-key-whiten was not refused: $(cat "$TMP/err")"
echo "ok"
