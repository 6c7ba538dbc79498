#!/usr/bin/env bash
# The streaming evaluation behind docs/streaming.md: stories260K over the TinyStories prefix,
# streamed through each cache policy, with peak memory per run. The 1,000,000-token sink run is the
# long one; the baselines are run as far as they need to show their behaviour.
# Usage: bench/streaming.sh [OUT_DIR] [STEPS...]   (from the repository root, after building)
set -euo pipefail
BIN=${ENDLESS_BIN:-build/endless}
SHARED=${ENDLESS_SHARED:-../shared}
OUT=${1:-out/streaming}; shift || true
STEPS=${*:-"sink-1M sink-10k window shift full recompute speed plot"}
MODEL=$SHARED/models/stories260K.gguf
TEXT=$SHARED/text/tinystories-valid-prefix.txt
mkdir -p "$OUT"
run() {  # name, then perplexity arguments
  local name=$1; shift
  /usr/bin/time -v "$BIN" perplexity --stream -m "$MODEL" -f "$TEXT" -t 1 "$@" \
    --csv "$OUT/$name.csv" > "$OUT/$name.txt" 2> "$OUT/$name.time"
  echo "$name: $(head -1 "$OUT/$name.txt")  peak RSS $(grep 'Maximum resident' "$OUT/$name.time" | awk '{print $NF}') KiB"
}
for step in $STEPS; do
  case $step in
    # 1M tokens: the file (393,019 tokens) three times over, cut at 1,000,000.
    sink-1M)   run sink-1M   --cache sink --sink 4 --window 512 --repeat 3 --max-tokens 1000000 --segment 10000 ;;
    sink-10k)  run sink-10k  --cache sink --sink 4 --window 512 --max-tokens 10000 --segment 1000 ;;
    window)    run window    --cache window --window 512 --repeat 3 --max-tokens 200000 --segment 10000 ;;
    shift)     run shift     --cache shift -c 512 --repeat 3 --max-tokens 200000 --segment 10000 ;;
    full)      run full-8k   --cache full -c 8192 --max-tokens 8192 --segment 1024 ;;
    # The quality oracle on the first 10,000 tokens, beside sink at the same window (sink-10k).
    recompute) run recompute-10k --cache recompute --window 512 --max-tokens 10000 --segment 1000 ;;
    # Speed at W=1024, side by side, one token per forward pass as in decoding: sink vs recompute.
    # Compare segments past the first 1,024 tokens, where both windows are full (CPU time per token).
    speed)     run speed-sink-1024      --cache sink --sink 4 --window 1024 -b 1 --max-tokens 3000 --segment 500
               run speed-recompute-1024 --cache recompute --window 1024 --max-tokens 1300 --segment 100 ;;
    plot)      gnuplot -e "out='$OUT'" bench/streaming.gp ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
