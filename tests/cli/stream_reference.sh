#!/usr/bin/env bash
# `endless perplexity --stream` per 1,000-token segment against an independent float64 forward
# pass (reference/streaming-stories260K.csv) for sink 4+508 and window 512, first 8,000 tokens:
# each segment within 0.5% (our cache holds keys and values in half precision).
. "$(dirname "$0")/lib.sh"
require_shared models/stories260K.gguf text/tinystories-valid-prefix.txt reference/streaming-stories260K.csv
"$ENDLESS_BIN" perplexity --stream -m "$SHARED/models/stories260K.gguf" \
  -f "$SHARED/text/tinystories-valid-prefix.txt" --cache sink,window --sink 4 --window 512 \
  --max-tokens 8001 --segment 1000 --csv "$TMP/ours.csv" -t 2 > "$TMP/out.txt" 2>&1 ||
  { cat "$TMP/out.txt"; fail "endless perplexity --stream failed"; }
checked=0
while IFS=, read -r policy from to tokens ppl; do
  case "$policy" in sink-4+508) ours="sink 4+508" ;; window-512) ours="window 512" ;; *) continue ;; esac
  [ "$to" -le 8000 ] || continue
  # Our segment [from+1, to+1) scores the same predictions as the reference's query range [from, to).
  got=$(awk -F, -v p="$ours" -v b=$((from + 1)) '$2 == p && $3 == b { print $6 }' "$TMP/ours.csv")
  [ -n "$got" ] || fail "no segment starting at $((from + 1)) for $ours"
  ok=$(awk -v g="$got" -v w="$ppl" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; print (d <= 0.005) ? 1 : 0 }')
  printf '%-12s [%5d, %5d) reference %-8s ours %-8s %s\n' "$ours" "$from" "$to" "$ppl" "$got" "$([ "$ok" = 1 ] && echo ok || echo MISMATCH)"
  [ "$ok" = 1 ] || fail "$ours segment [$from, $to): $got vs reference $ppl"
  checked=$((checked + 1))
done < <(grep -v '^#' "$SHARED/reference/streaming-stories260K.csv")
[ "$checked" -ge 16 ] || fail "only $checked segments compared"
echo "OK: $checked segments match the float64 reference"
