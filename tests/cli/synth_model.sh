#!/usr/bin/env bash
# `endless synth`: writes random-weight models of the asked shape and type, deterministically, that
# load and generate; bad shapes fail with a message and a non-zero exit.
set -u
bin="${ENDLESS_BIN:?ENDLESS_BIN must name the endless binary}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$bin" synth --help >"$tmp/help" 2>&1 || fail "synth --help exits non-zero"
for opt in --arch --dim --layers --heads --kv-heads --ff --vocab --type --seed --ctx; do
  grep -q -- "$opt" "$tmp/help" || fail "synth --help does not list $opt"
done

shape=(--dim 256 --layers 2 --heads 4 --kv-heads 2 --ff 512 --vocab 320)
for type in F32 F16 BF16 Q8_0 Q4_0 Q4_K Q6_K; do
  out="$tmp/llama.$type.gguf"
  "$bin" synth --arch llama "${shape[@]}" --type "$type" --seed 3 -o "$out" >/dev/null 2>&1 ||
    { fail "synth --type $type"; continue; }
  "$bin" info -m "$out" >"$tmp/info" 2>&1 || { fail "info on the $type model"; continue; }
  # 2 layers x 7 matrices + token_embd + output take the type; 2 x 2 norms + output_norm stay F32.
  if [[ $type == F32 ]]; then
    grep -Eq "^  F32 +21 tensors" "$tmp/info" || fail "$type: expected 21 F32 tensors"
  else
    grep -Eq "^  $type +16 tensors" "$tmp/info" || fail "$type: expected 16 $type tensors"
    grep -Eq "^  F32 +5 tensors" "$tmp/info" || fail "$type: expected 5 F32 tensors"
  fi
  grep -Eq "llama.embedding_length +256$" "$tmp/info" || fail "$type: embedding_length"
  grep -Eq "llama.attention.head_count_kv +2$" "$tmp/info" || fail "$type: head_count_kv"
  grep -Eq "tokenizer.ggml.tokens +\[string x 320\]" "$tmp/info" || fail "$type: vocabulary size"
done

# The same seed gives the same file; another seed another one.
"$bin" synth "${shape[@]}" --type Q4_K --seed 3 -o "$tmp/again.gguf" >/dev/null 2>&1
cmp -s "$tmp/again.gguf" "$tmp/llama.Q4_K.gguf" || fail "the same seed gave a different file"
"$bin" synth "${shape[@]}" --type Q4_K --seed 4 -o "$tmp/other.gguf" >/dev/null 2>&1
cmp -s "$tmp/other.gguf" "$tmp/llama.Q4_K.gguf" && fail "another seed gave the same file"

"$bin" synth --arch qwen2 "${shape[@]}" --type Q8_0 --ctx 512 -o "$tmp/qwen2.gguf" >/dev/null 2>&1 ||
  fail "synth --arch qwen2"
"$bin" info -m "$tmp/qwen2.gguf" >"$tmp/info" 2>&1
grep -Eq "qwen2.context_length +512$" "$tmp/info" || fail "qwen2: context_length"
grep -Eq "^  F32 +11 tensors" "$tmp/info" || fail "qwen2: norms and 6 biases should be F32"

# Bad shapes: a message naming the flag, a non-zero exit, no file.
expect_failure() {  # expect_failure WHAT NEEDLE ARGS...
  local what=$1 needle=$2
  shift 2
  if "$bin" synth "$@" -o "$tmp/bad.gguf" >"$tmp/err" 2>&1; then
    fail "$what: exit status 0"
  elif ! grep -q -- "$needle" "$tmp/err"; then
    fail "$what: message lacks '$needle':"; cat "$tmp/err"
  fi
  [[ -e "$tmp/bad.gguf" ]] && fail "$what: left a file behind"
}
expect_failure "K-quant of a short row" "--dim 64 must be a multiple of 256" \
  --dim 64 --heads 4 --kv-heads 2 --ff 256 --type Q4_K
expect_failure "heads not dividing dim" "--dim 256 is not a multiple of --heads 3" --heads 3 --kv-heads 1
expect_failure "tiny vocabulary" "--vocab 100" --vocab 100
expect_failure "unknown type" "unknown weight type 'Q9_9'" --type Q9_9
expect_failure "unknown architecture" "gpt2" --arch gpt2

# The models load, tokenize any text (byte fallback) and generate.
if "$bin" run --help >/dev/null 2>&1; then
  for model in llama.Q4_K llama.F16 qwen2; do
    if "$bin" run -m "$tmp/$model.gguf" -p "Once upon a time, ünïcödé" -n 12 --temp 0 -t 1 \
      >"$tmp/run.out" 2>"$tmp/run.err"; then
      grep -q "^Once upon a time, ünïcödé" "$tmp/run.out" ||
        fail "$model: the output does not start with the prompt"
    else
      cat "$tmp/run.err"
      fail "run on $model"
    fi
  done
else
  echo "note: this endless has no 'run' subcommand; generation not checked"
fi

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all synth checks passed"
