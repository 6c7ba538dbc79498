#!/usr/bin/env bash
# The streaming evaluation behind docs/streaming.md: stories260K over the TinyStories prefix,
# streamed to 1,000,000 tokens through each cache policy, with peak memory per run.
# Usage: bench/streaming.sh [OUT_DIR]   (from the repository root, after building)
set -euo pipefail
BIN=${ENDLESS_BIN:-build/endless}
SHARED=${ENDLESS_SHARED:-../shared}
OUT=${1:-out/streaming}
MODEL=$SHARED/models/stories260K.gguf
TEXT=$SHARED/text/tinystories-valid-prefix.txt
mkdir -p "$OUT"
run() {  # name, then perplexity arguments
  local name=$1; shift
  /usr/bin/time -v "$BIN" perplexity --stream -m "$MODEL" -f "$TEXT" -t 1 "$@" \
    --csv "$OUT/$name.csv" > "$OUT/$name.txt" 2> "$OUT/$name.time"
  echo "$name: $(head -1 "$OUT/$name.txt")  peak RSS $(grep 'Maximum resident' "$OUT/$name.time" | awk '{print $NF}') KiB"
}
# 1M tokens: the file (393,019 tokens) three times over, cut at 1,000,000.
run sink-1M      --cache sink --sink 4 --window 512 --repeat 3 --max-tokens 1000000 --segment 10000
run sink-10k     --cache sink --sink 4 --window 512 --max-tokens 10000 --segment 1000
run window-1M    --cache window --window 512 --repeat 3 --max-tokens 1000000 --segment 10000
run shift-1M     --cache shift -c 512 --repeat 3 --max-tokens 1000000 --segment 10000
run full-8k      --cache full -c 8192 --max-tokens 8192 --segment 1024
# The quality oracle on the first 10,000 tokens, beside sink at the same window.
run recompute-10k --cache recompute --window 512 --max-tokens 10000 --segment 1000
# Speed at W=1024, side by side: sink vs recompute on the same 3,000 tokens.
run speed-sink-1024      --cache sink --sink 4 --window 1024 --max-tokens 3000 --segment 3000
run speed-recompute-1024 --cache recompute --window 1024 --max-tokens 3000 --segment 3000
# One plot of the 1M-token runs.
"$BIN" perplexity --stream -m "$MODEL" -f "$TEXT" -t 1 --cache sink,window,shift -c 512 \
  --repeat 3 --max-tokens 1000000 --segment 20000 --plot "$OUT/streaming-1M.png" > "$OUT/plot.txt" 2>&1
