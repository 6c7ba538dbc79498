#!/usr/bin/env bash
# `endless perplexity` matches every line of llama-perplexity's results in
# reference/llamacpp-perplexity.txt: within 0.1% for F32/F16/BF16 models, 1% for quantized ones.
# Usage: perplexity_reference.sh [min_ctx max_ctx]   (default 1..1024; the slow test does the rest)
. "$(dirname "$0")/lib.sh"
require_shared reference/llamacpp-perplexity.txt text/tinystories-valid-prefix.txt
min_ctx="${1:-1}"
max_ctx="${2:-1024}"
checked=0
while IFS= read -r line; do
  # e.g. "stories260K.gguf -c 128 --chunks 40: Final estimate: PPL = 3.7549 +/- 0.13205"
  model=$(echo "$line" | awk '{print $1}')
  ctx=$(echo "$line" | awk '{print $3}')
  chunks=$(echo "$line" | awk '{print $5}' | tr -d ':')
  want=$(echo "$line" | sed 's/.*PPL = \([0-9.]*\).*/\1/')
  [ "$ctx" -ge "$min_ctx" ] && [ "$ctx" -le "$max_ctx" ] || continue
  path="$SHARED/models/$model"; [ -e "$path" ] || path="$SHARED/models/synth/$model"
  [ -e "$path" ] || { echo "skip $model (absent)"; continue; }
  got=$("$ENDLESS_BIN" perplexity -m "$path" -f "$SHARED/text/tinystories-valid-prefix.txt" \
        -c "$ctx" --chunks "$chunks" 2>/dev/null | sed -n 's/.*PPL = \([0-9.]*\).*/\1/p')
  case "$model" in *.q*) tol=0.01 ;; *) tol=0.001 ;; esac
  ok=$(awk -v g="$got" -v w="$want" -v t="$tol" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; print (d <= t) ? 1 : 0 }')
  printf '%-28s -c %-5s want %-12s got %-12s %s\n' "$model" "$ctx" "$want" "$got" "$([ "$ok" = 1 ] && echo ok || echo MISMATCH)"
  [ "$ok" = 1 ] || fail "$model -c $ctx: perplexity $got, llama.cpp $want (tolerance $tol)"
  checked=$((checked + 1))
done < "$SHARED/reference/llamacpp-perplexity.txt"
[ "$checked" -gt 0 ] || fail "no reference line was checked"
echo "OK: $checked perplexities match llama.cpp"
