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
# infllm's defaults before 2026-11-29 (later), for the steps measured with them: keys scoring with
# one mean key per block over the last 32 tokens, no consensus, scored every token, the memory at
# the window's distance. Each step below names what it changed from these.
OLD="--mem-key-window 32 --mem-key-halflife 0 --no-mem-key-whiten --mem-consensus-from -1"
PLAIN="$OLD --mem-key-parts 1 --no-mem-consensus"
WHITEN="--mem-key-parts 4 --mem-consensus --mem-consensus-from 0 --mem-key-halflife 16 --mem-key-window 64 --mem-key-whiten"
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
    # Remembering what the window forgot (docs/streaming.md, last section). infllm at the recall
    # benchmark's settings (two blocks of 64, memory 150 tokens from the query) over 1M tokens,
    # blocks spilled to a memory file (1 MiB of blocks in RAM), and over 10,000 tokens for the
    # peak-RSS comparison; sirllm beside sink's first 200,000.
    infllm-1M)  rm -rf "$OUT/mem-1M"; mkdir -p "$OUT/mem-1M"
                run infllm-1M  --cache infllm --sink 4 --window 512 --block-size 64 --block-topk 2 --mem-distance 150 $PLAIN --mem-retrieve-every 1 --repeat 3 \
                  --max-tokens 1000000 --segment 10000 --memory-dir "$OUT/mem-1M" --mem-ram 1 ;;
    infllm-10k) rm -rf "$OUT/mem-10k"; mkdir -p "$OUT/mem-10k"
                run infllm-10k --cache infllm --sink 4 --window 512 --block-size 64 --block-topk 2 --mem-distance 150 $PLAIN --mem-retrieve-every 1 \
                  --max-tokens 10000 --segment 1000 --memory-dir "$OUT/mem-10k" --mem-ram 1 ;;
    # sirllm with its noise ceiling (the default: log of the vocabulary size), then without it
    # (SirLLM as published: --sir-max-nll 0) at the settings tried before the ceiling existed.
    sirllm)     run sirllm-200k --cache sink,sirllm --sink 4 --window 512 --repeat 3 --max-tokens 200000 --segment 10000
                run sirllm-nomax-200k --cache sirllm --sir-max-nll 0 --sink 4 --window 512 --repeat 3 --max-tokens 200000 --segment 10000
                run sirllm-nomax-32-200k --cache sirllm --sir-max-nll 0 --sir-keep 32 --sink 4 --window 512 --repeat 3 --max-tokens 200000 --segment 10000
                run sirllm-nomax-e64-200k --cache sirllm --sir-max-nll 0 --sir-decay-every 64 --sink 4 --window 512 --repeat 3 --max-tokens 200000 --segment 10000 ;;
    # Decode cost at the same local window, side by side in one run, one token per pass (CPU time
    # per segment in the CSV: tokens_per_cpu_second).
    speed-memory) run speed-memory --cache sink,infllm,sirllm --sink 4 --window 512 --block-size 64 --block-topk 2 --mem-distance 150 $PLAIN --mem-retrieve-every 1 \
                    -b 1 --max-tokens 4000 --segment 1000 ;;
    # Deeper one-token decoding: 200,000 tokens, blocks scored every 16 tokens, beside sink.
    speed-memory-deep) run speed-memory-deep --cache sink,infllm --sink 4 --window 512 --block-size 64 --block-topk 2 \
                    --mem-distance 150 $PLAIN --mem-retrieve-every 16 -b 1 --max-tokens 200000 --segment 20000 ;;
    # One token per pass over 1M tokens beside sink, blocks spilled (the two-level index bounds
    # the cost of a search); then the same with parts and consensus, scored every 8 tokens.
    speed-memory-1M) rm -rf "$OUT/mem-b1"; mkdir -p "$OUT/mem-b1"
                run speed-memory-1M --cache sink,infllm --sink 4 --window 512 --block-size 64 --block-topk 2 --mem-distance 150 $PLAIN --mem-retrieve-every 1 \
                  --repeat 3 -b 1 --max-tokens 1000000 --segment 50000 --memory-dir "$OUT/mem-b1" --mem-ram 1 ;;
    speed-memory-cons-1M) rm -rf "$OUT/memc-b1"; mkdir -p "$OUT/memc-b1"
                run speed-memory-cons-1M --cache sink,infllm --sink 4 --window 512 --block-size 64 --block-topk 2 --mem-distance 150 \
                  --mem-key-parts 4 --mem-consensus $OLD --mem-retrieve-every 8 \
                  --repeat 3 -b 1 --max-tokens 1000000 --segment 50000 --memory-dir "$OUT/memc-b1" --mem-ram 1 ;;
    # infllm with parts and consensus (the recall benchmark's best setting) over 1M and 10,000 tokens.
    infllm-cons-1M) rm -rf "$OUT/memc-1M"; mkdir -p "$OUT/memc-1M"
                run infllm-cons-1M --cache infllm --sink 4 --window 512 --block-size 64 --block-topk 2 --mem-distance 150 \
                  --mem-key-parts 4 --mem-consensus $OLD --mem-retrieve-every 1 --repeat 3 --max-tokens 1000000 --segment 10000 --memory-dir "$OUT/memc-1M" --mem-ram 1 ;;
    infllm-cons-10k) rm -rf "$OUT/memc-10k"; mkdir -p "$OUT/memc-10k"
                run infllm-cons-10k --cache infllm --sink 4 --window 512 --block-size 64 --block-topk 2 --mem-distance 150 \
                  --mem-key-parts 4 --mem-consensus $OLD --mem-retrieve-every 1 --max-tokens 10000 --segment 1000 --memory-dir "$OUT/memc-10k" --mem-ram 1 ;;
    # Repeat-after-gap with parts and consensus (and scored every 8 tokens).
    recall-cons) for gap in 600 2000; do
                  for every in 1 8; do
                    "$BIN" eval recall -m "$MODEL" -f "$TEXT" -t 1 --cache infllm --sink 4 --window 512 \
                      --block-size 64 --block-topk 2 --mem-distance 150 --mem-key-parts 4 --mem-consensus $OLD \
                      --mem-retrieve-every $every --gap $gap --passages 40 \
                      --csv "$OUT/recall-cons-g$gap-e$every.csv" > "$OUT/recall-cons-g$gap-e$every.txt" 2>/dev/null
                    tail -n 5 "$OUT/recall-cons-g$gap-e$every.txt"
                  done
                done ;;
    # infllm, 3x64 with the key half-life, whitening and layer 0 in the consensus (2026-11-29):
    # recall at both gaps, 1M tokens batched, 200,000 one-token decodes beside sink.
    recall-whiten) for gap in 600 2000; do
                  "$BIN" eval recall -m "$MODEL" -f "$TEXT" -t 1 --cache infllm --sink 4 --window 512 \
                    --block-size 64 --block-topk 3 --mem-distance 150 $WHITEN --mem-retrieve-every 1 --gap $gap --passages 40 \
                    --csv "$OUT/recall-whiten-g$gap.csv" > "$OUT/recall-whiten-g$gap.txt" 2>/dev/null
                  tail -n 6 "$OUT/recall-whiten-g$gap.txt"
                done ;;
    infllm-whiten-1M) rm -rf "$OUT/memw-1M"; mkdir -p "$OUT/memw-1M"
                run infllm-whiten-1M --cache infllm --sink 4 --window 512 --block-size 64 --block-topk 3 --mem-distance 150 \
                  $WHITEN --mem-retrieve-every 1 --repeat 3 --max-tokens 1000000 --segment 10000 --memory-dir "$OUT/memw-1M" --mem-ram 1 ;;
    speed-memory-whiten) run speed-memory-whiten --cache sink,infllm --sink 4 --window 512 --block-size 64 --block-topk 3 \
                  --mem-distance 150 $WHITEN --mem-retrieve-every 1 -b 1 --max-tokens 200000 --segment 20000 ;;
    # The same scoring with the memory 200 tokens from the query and blocks scored every 8 tokens
    # (2026-11-29, later): recall at both gaps, 1M tokens batched, and 200,000 one-token decodes
    # with sink and infllm as two processes running at the same time (so the machine's other load
    # falls on both alike; compare their CPU time).
    recall-d200) for gap in 600 2000; do
                  "$BIN" eval recall -m "$MODEL" -f "$TEXT" -t 1 --cache infllm --sink 4 --window 512 \
                    --block-size 64 --block-topk 3 --mem-distance 200 --mem-retrieve-every 8 $WHITEN --gap $gap --passages 40 \
                    --csv "$OUT/recall-d200-g$gap.csv" > "$OUT/recall-d200-g$gap.txt" 2>/dev/null
                  tail -n 6 "$OUT/recall-d200-g$gap.txt"
                done ;;
    infllm-d200-1M) rm -rf "$OUT/memd-1M"; mkdir -p "$OUT/memd-1M"
                run infllm-d200-1M --cache infllm --sink 4 --window 512 --block-size 64 --block-topk 3 --mem-distance 200 \
                  --mem-retrieve-every 8 $WHITEN --repeat 3 --max-tokens 1000000 --segment 10000 --memory-dir "$OUT/memd-1M" --mem-ram 1 ;;
    speed-memory-d200) run speed-d200-sink --cache sink --sink 4 --window 512 -b 1 --max-tokens 200000 --segment 20000 &
                run speed-d200-infllm --cache infllm --sink 4 --window 512 --block-size 64 --block-topk 3 --mem-distance 200 \
                  --mem-retrieve-every 8 $WHITEN -b 1 --max-tokens 200000 --segment 20000 &
                wait ;;
    # The same over 1M one-token decodes, blocks spilled (infllm with its defaults, which are
    # this setting since 2026-11-29).
    speed-memory-d200-1M) rm -rf "$OUT/memd-b1"; mkdir -p "$OUT/memd-b1"
                run speed-d200-1M-sink --cache sink --sink 4 --window 512 -b 1 --repeat 3 --max-tokens 1000000 --segment 50000 &
                run speed-d200-1M-infllm --cache infllm --sink 4 --window 512 -b 1 --repeat 3 --max-tokens 1000000 --segment 50000 \
                  --memory-dir "$OUT/memd-b1" --mem-ram 1 &
                wait ;;
    # Repeat-after-gap (endless eval recall), 40 passages each: infllm vs sink vs a distractor.
    recall)     for gap in 600 2000; do
                  "$BIN" eval recall -m "$MODEL" -f "$TEXT" -t 1 --cache infllm --sink 4 --window 512 \
                    --block-size 64 --block-topk 2 --mem-distance 150 $PLAIN --mem-retrieve-every 1 --gap $gap --passages 40 \
                    --csv "$OUT/recall-g$gap.csv" > "$OUT/recall-g$gap.txt" 2>/dev/null
                  tail -n 5 "$OUT/recall-g$gap.txt"
                done ;;
    # The same with InfLLM's original scoring in every layer (the starting point).
    recall-query) "$BIN" eval recall -m "$MODEL" -f "$TEXT" -t 1 --cache infllm --sink 4 --window 512 \
                    --block-size 64 --block-topk 2 --mem-score query --mem-skip-layers 0 --mem-distance 0 --mem-retrieve-every 1 --gap 600 --passages 40 \
                    > "$OUT/recall-query-g600.txt" 2>/dev/null
                  tail -n 5 "$OUT/recall-query-g600.txt" ;;
    plot)      gnuplot -e "out='$OUT'" bench/streaming.gp ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
