#!/usr/bin/env bash
# Every subcommand has --help; unknown flags, missing files and bad values give a clear message
# and a non-zero exit, never a crash.
. "$(dirname "$0")/lib.sh"
expect_fail() {  # expected message fragment, then the command line
  local fragment=$1; shift
  set +e
  "$ENDLESS_BIN" "$@" > "$TMP/out" 2> "$TMP/err"
  local rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "'endless $*' succeeded but should have failed"
  [ "$rc" -lt 128 ] || fail "'endless $*' crashed (exit $rc)"
  grep -qi -- "$fragment" "$TMP/err" "$TMP/out" || { cat "$TMP/err"; fail "'endless $*': no message mentioning '$fragment'"; }
}
commands=$("$ENDLESS_BIN" --help | awk '/^Subcommands:/ { on = 1; next } on && NF { print $1 }')
[ -n "$commands" ] || fail "no subcommands listed by --help"
for c in $commands; do
  "$ENDLESS_BIN" "$c" --help > "$TMP/help" || fail "endless $c --help failed"
  grep -q "Usage" "$TMP/help" || fail "endless $c --help printed no usage"
done
"$ENDLESS_BIN" synth --dim 64 --layers 1 --heads 4 --kv-heads 2 --ff 64 --vocab 300 --type f32 -o "$TMP/m.gguf" > /dev/null
expect_fail "not-a-flag" run -m "$TMP/m.gguf" --not-a-flag
expect_fail "does not exist" run -m "$TMP/missing.gguf"
expect_fail "temp" run -m "$TMP/m.gguf" --temp -1
expect_fail "top-p" run -m "$TMP/m.gguf" --top-p 2
expect_fail "cache" run -m "$TMP/m.gguf" --cache nonsense
expect_fail "n-predict" run -m "$TMP/m.gguf" -n banana
expect_fail "model" info
printf 'GGUF\003\000\000\000garbage' > "$TMP/bad.gguf"
expect_fail "bad.gguf" run -m "$TMP/bad.gguf"
expect_fail "bad.gguf" info -m "$TMP/bad.gguf"
head -c 1000 "$TMP/m.gguf" > "$TMP/truncated.gguf"
expect_fail "truncated" run -m "$TMP/truncated.gguf"
expect_fail "context full" run -m "$TMP/m.gguf" -c 8 -n 20 -p "hello there, this prompt is long enough"
echo "OK: $(echo "$commands" | wc -w) subcommands have --help; bad input fails cleanly"
