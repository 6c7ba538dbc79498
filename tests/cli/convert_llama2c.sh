#!/usr/bin/env bash
# `endless convert --llama2c`: stories260K converts to the reference GGUF byte for byte, the other
# llama2.c checkpoints convert, and broken input fails with a message and a non-zero exit.
set -u
bin="${ENDLESS_BIN:?ENDLESS_BIN must name the endless binary}"
src="${ENDLESS_SOURCE_DIR:?ENDLESS_SOURCE_DIR must name the source tree}"
shared="${ENDLESS_SHARED:-$src/../shared}"
l2c="$shared/models/llama2c"
if [[ ! -f "$l2c/stories260K.bin" || ! -f "$shared/models/stories260K.gguf" ]]; then
  echo "skipped: $l2c/stories260K.bin or stories260K.gguf is absent (shared data not available)"
  exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Help names the options.
"$bin" convert --help >"$tmp/help" 2>&1 || fail "convert --help exits non-zero"
grep -q -- "--llama2c" "$tmp/help" && grep -q -- "--tokenizer" "$tmp/help" ||
  fail "convert --help does not list --llama2c and --tokenizer"

# The reference file was written by llama.cpp's converter with a context length of 2048.
"$bin" convert --llama2c "$l2c/stories260K.bin" --tokenizer "$l2c/tok512.bin" --ctx 2048 \
  -o "$tmp/stories260K.gguf" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "stories260K conversion"; }
cmp -s "$tmp/stories260K.gguf" "$shared/models/stories260K.gguf" ||
  fail "stories260K.gguf differs from the reference"

# Without --ctx the context length is the checkpoint's seq_len.
"$bin" convert --llama2c "$l2c/stories260K.bin" --tokenizer "$l2c/tok512.bin" \
  -o "$tmp/s512.gguf" >/dev/null 2>&1 || fail "stories260K conversion without --ctx"
"$bin" info -m "$tmp/s512.gguf" >"$tmp/info" 2>&1 || fail "info on the converted model"
grep -Eq "llama.context_length +512$" "$tmp/info" || fail "context_length is not 512"

for pair in "babyllama105.bin tok105.bin 128" "aidreams260K.bin aidreams-tok512.bin 64"; do
  set -- $pair
  if [[ -f "$l2c/$1" ]]; then
    "$bin" convert --llama2c "$l2c/$1" --tokenizer "$l2c/$2" -o "$tmp/$1.gguf" >/dev/null 2>&1 ||
      fail "$1 conversion"
    "$bin" info -m "$tmp/$1.gguf" 2>&1 | grep -Eq "llama.embedding_length +$3$" ||
      fail "$1: embedding_length is not $3"
  fi
done

# Broken input: non-zero exit, a message naming the problem, no output left behind.
expect_failure() {  # expect_failure WHAT NEEDLE ARGS...
  local what=$1 needle=$2
  shift 2
  if "$bin" convert "$@" >"$tmp/err" 2>&1; then
    fail "$what: exit status 0"
  elif ! grep -q -- "$needle" "$tmp/err"; then
    fail "$what: message lacks '$needle':"; cat "$tmp/err"
  fi
}
head -c 1000000 "$l2c/stories260K.bin" >"$tmp/cut.bin"
expect_failure "truncated checkpoint" "is truncated" \
  --llama2c "$tmp/cut.bin" --tokenizer "$l2c/tok512.bin" -o "$tmp/cut.gguf"
[[ -e "$tmp/cut.gguf" ]] && fail "a failed conversion left its output behind"
head -c 3000 "$l2c/tok512.bin" >"$tmp/cut.tok"
expect_failure "truncated tokenizer" "truncated inside token" \
  --llama2c "$l2c/stories260K.bin" --tokenizer "$tmp/cut.tok" -o "$tmp/x.gguf"
if [[ -f "$l2c/tok105.bin" ]]; then
  expect_failure "tokenizer of another model" "holds only 105 tokens" \
    --llama2c "$l2c/stories260K.bin" --tokenizer "$l2c/tok105.bin" -o "$tmp/x.gguf"
fi
expect_failure "a GGUF as the checkpoint" "is a GGUF file" \
  --llama2c "$shared/models/stories260K.gguf" --tokenizer "$l2c/tok512.bin" -o "$tmp/x.gguf"
expect_failure "missing checkpoint" "absent.bin" \
  --llama2c "$tmp/absent.bin" --tokenizer "$l2c/tok512.bin" -o "$tmp/x.gguf"
expect_failure "missing output option" "output" \
  --llama2c "$l2c/stories260K.bin" --tokenizer "$l2c/tok512.bin"

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all convert checks passed"
