#!/usr/bin/env bash
# `endless stream`: reads stdin to EOF, answers every question line with one reply line, exits 0,
# and its peak memory does not grow with the length of the input.
. "$(dirname "$0")/lib.sh"
MODEL_ARGS=()
if [ -e "$SHARED/models/stories260K.gguf" ]; then MODEL_ARGS=(-m "$SHARED/models/stories260K.gguf"); fi
make_input() {  # lines of text, a question every N lines
  local lines=$1
  awk -v n="$lines" 'BEGIN { for (i = 1; i <= n; i++) { print "Line " i ": the cat sat on the mat and looked at the bird."; if (i % 200 == 0) print ">>> What did the cat do?" } }'
}
make_input 400 > "$TMP/short.txt"
make_input 4000 > "$TMP/long.txt"
for size in short long; do
  /usr/bin/time -f %M -o "$TMP/$size.rss" "$ENDLESS_BIN" stream "${MODEL_ARGS[@]}" -t 1 -q \
    --cache sink --sink 4 --window 256 -n 16 < "$TMP/$size.txt" > "$TMP/$size.out" ||
    fail "endless stream exited with an error on the $size input"
done
want=$(grep -c '^>>> ' "$TMP/long.txt")
got=$(wc -l < "$TMP/long.out")
[ "$got" -eq "$want" ] || fail "expected $want reply lines, got $got"
short=$(cat "$TMP/short.rss"); long=$(cat "$TMP/long.rss")
echo "peak RSS: $short KiB for 400 lines, $long KiB for 4000 lines"
awk -v s="$short" -v l="$long" 'BEGIN { exit !(l <= s * 1.05 + 2048) }' ||
  fail "memory grew with the input: $short KiB -> $long KiB"
echo "OK: $got replies, memory flat"
