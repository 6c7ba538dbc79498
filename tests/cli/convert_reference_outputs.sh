#!/usr/bin/env bash
# Converted llama2.c models generate what llama.cpp generates from its own conversions: greedy
# continuations of babyllama105 and aidreams260K match ../shared/reference.
set -u
bin="${ENDLESS_BIN:?ENDLESS_BIN must name the endless binary}"
src="${ENDLESS_SOURCE_DIR:?ENDLESS_SOURCE_DIR must name the source tree}"
shared="${ENDLESS_SHARED:-$src/../shared}"
l2c="$shared/models/llama2c"
ref="$shared/reference"
for f in "$l2c/babyllama105.bin" "$l2c/tok105.bin" "$l2c/aidreams260K.bin" \
         "$l2c/aidreams-tok512.bin" "$ref/babyllama105-greedy120.txt" \
         "$ref/aidreams260K-llamacpp-greedy.txt"; do
  if [[ ! -f "$f" ]]; then
    echo "skipped: $f is absent (shared data not available)"
    exit 77
  fi
done
if ! "$bin" run --help >/dev/null 2>&1; then
  echo "skipped: this endless has no 'run' subcommand"
  exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$bin" convert --llama2c "$l2c/babyllama105.bin" --tokenizer "$l2c/tok105.bin" \
  -o "$tmp/babyllama105.gguf" >/dev/null || fail "babyllama105 conversion"
"$bin" convert --llama2c "$l2c/aidreams260K.bin" --tokenizer "$l2c/aidreams-tok512.bin" \
  -o "$tmp/aidreams260K.gguf" >/dev/null || fail "aidreams260K conversion"

# babyllama105: the reference holds the 120-character continuation, quoted ('...').
prompt="Once upon a time"
"$bin" run -m "$tmp/babyllama105.gguf" -p "$prompt" -n 120 --temp 0 -t 1 \
  >"$tmp/baby.out" 2>"$tmp/baby.err" || { cat "$tmp/baby.err"; fail "run babyllama105"; }
want=$(sed -e "s/^'//" -e "s/'\$//" "$ref/babyllama105-greedy120.txt")
got=$(cat "$tmp/baby.out")
if [[ "$got" != "$prompt$want" ]]; then
  fail "babyllama105 continuation differs"
  printf 'want: %q\ngot:  %q\n' "$prompt$want" "$got"
fi

# aidreams260K: the reference is llama.cpp's output, BOS shown as "<s> ", cut after some tokens;
# ours, with more tokens, must start with it.
"$bin" run -m "$tmp/aidreams260K.gguf" -p "Echoes of" -n 64 --temp 0 -t 1 \
  >"$tmp/dreams.out" 2>"$tmp/dreams.err" || { cat "$tmp/dreams.err"; fail "run aidreams260K"; }
want=$(sed -e 's/^<s> //' "$ref/aidreams260K-llamacpp-greedy.txt")
got=$(cat "$tmp/dreams.out")
if [[ "$got" != "$want"* ]]; then
  fail "aidreams260K continuation differs"
  printf 'want prefix: %q\ngot:         %q\n' "$want" "$got"
fi

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "converted models reproduce the reference outputs"
