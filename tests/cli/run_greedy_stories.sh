#!/usr/bin/env bash
# `endless run -p "" -n 200 --temp 0` on stories260K prints exactly llama2.c's greedy output.
. "$(dirname "$0")/lib.sh"
require_shared models/stories260K.gguf reference/stories260K-llama2c-greedy200.txt
"$ENDLESS_BIN" run -m "$SHARED/models/stories260K.gguf" -p "" -n 200 --temp 0 -t 1 > "$TMP/out.txt"
cmp "$TMP/out.txt" "$SHARED/reference/stories260K-llama2c-greedy200.txt" ||
  { diff "$TMP/out.txt" "$SHARED/reference/stories260K-llama2c-greedy200.txt" | head; fail "output differs"; }
echo "OK: identical to llama2.c's greedy output"
# The same with the weights read into memory instead of mapped (--no-mmap), pinned (--mlock).
"$ENDLESS_BIN" run -m "$SHARED/models/stories260K.gguf" -p "" -n 200 --temp 0 -t 2 --no-mmap --mlock > "$TMP/out-read.txt"
cmp "$TMP/out-read.txt" "$SHARED/reference/stories260K-llama2c-greedy200.txt" || fail "--no-mmap output differs"
echo "OK: identical with --no-mmap"
