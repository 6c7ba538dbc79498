#!/usr/bin/env bash
# endless vs llama.cpp, side by side: for every weight type, the same GGUF file is measured by
# `endless bench` and by llama.cpp's `llama-bench`, with the same threads, prompt and decode
# lengths, in ROUNDS rounds one right after the other (the order alternating: llama.cpp first in
# odd rounds, endless first in even ones). Each round gives its own ratio of two measurements
# seconds apart, so a drift of the machine's speed (on this shared VM the same binary swings by
# 30% within minutes) lands in both sides of a ratio rather than between them. Prints a Markdown
# table: each side's median over the rounds, every round's ratio, and their median.
#
#   bench/compare_llamacpp.sh LLAMA_BENCH [MODELS_DIR]
#     env: ENDLESS_BIN (build/endless) TYPES ("F32 F16 BF16 Q8_0 Q4_0 Q4_K Q6_K") THREADS (2)
#          PROMPTS (128,512) GEN (64) REPS (3: timed runs per round) ROUNDS (3)
#          RAW_DIR (where the JSON of every run is kept)
#
# llama.cpp is built outside this repository (any recent checkout; the results in
# docs/benchmarks.md name the one used). The models are endless's random-weight 254M-parameter
# shape (dim 1024, 16 layers, 16 heads, 8 KV heads, FFN 2816, vocab 32000), every 2-D weight in
# the type named, as `llama-quantize --pure` would make them; missing ones are written with
# `endless synth` into MODELS_DIR (default /tmp/endless-bench-models; about 3 GB for all seven).
set -euo pipefail
llama_bench=${1:?usage: bench/compare_llamacpp.sh LLAMA_BENCH [MODELS_DIR]}
dir=${2:-/tmp/endless-bench-models}
bin=${ENDLESS_BIN:-build/endless}
types=${TYPES:-F32 F16 BF16 Q8_0 Q4_0 Q4_K Q6_K}
threads=${THREADS:-2}
prompts=${PROMPTS:-128,512}
gen=${GEN:-64}
reps=${REPS:-3}
rounds=${ROUNDS:-3}
raw=${RAW_DIR:-$dir/raw}
mkdir -p "$dir" "$raw"

# One round of one side for $model, $type and $round.
llama() {
  "$llama_bench" -m "$model" -t "$threads" -p "$prompts" -n "$gen" -r "$reps" -mmp 0 -o json \
    >"$raw/llama-$type-$round.json" 2>"$raw/llama-$type-$round.log"
}
endless() {
  "$bin" bench -m "$model" -t "$threads" -p "$prompts" -n "$gen" -r "$reps" --no-mmap --json \
    >"$raw/endless-$type-$round.json" 2>"$raw/endless-$type-$round.log"
}

for type in $types; do
  model=$dir/synth-254m-$type.gguf
  if [ ! -f "$model" ]; then
    echo "writing $model" >&2
    "$bin" synth --dim 1024 --layers 16 --heads 16 --kv-heads 8 --ff 2816 --vocab 32000 --ctx 4096 \
      --type "$type" -o "$model" >&2
  fi
  for round in $(seq 1 "$rounds"); do
    echo "measuring $type, round $round of $rounds" >&2
    if [ $((round % 2)) = 1 ]; then llama; endless; else endless; llama; fi
  done
done

python3 - "$raw" "$threads" "$rounds" $types <<'PY'
import json, statistics, sys
raw, threads, rounds, types = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def speeds(path):
    out = {}
    for r in json.load(open(path)):
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        out[test] = r["avg_ts"]
    return out
print("| type | test | llama.cpp t/s | endless t/s | ratio per round (sorted) | endless / llama.cpp (median) |")
print("|---|---|---:|---:|---|---:|")
for t in types:
    a = [speeds(f"{raw}/llama-{t}-{r}.json") for r in range(1, rounds + 1)]
    b = [speeds(f"{raw}/endless-{t}-{r}.json") for r in range(1, rounds + 1)]
    for test in sorted(a[0], key=lambda s: (s[:2] != "pp", int(s[2:]))):
        if any(test not in x for x in a + b): continue
        la = [x[test] for x in a]
        ea = [x[test] for x in b]
        ratios = sorted(e / l for e, l in zip(ea, la))
        each = ", ".join(f"{q:.2f}" for q in ratios)
        print(f"| {t} | {test} | {statistics.median(la):.1f} | {statistics.median(ea):.1f} | {each} | "
              f"**{statistics.median(ratios):.2f}x** |")
print(f"\n{threads} threads each; per side, the median over {rounds} rounds of each round's mean of its runs.")
PY
