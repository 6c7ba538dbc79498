#!/usr/bin/env bash
# endless vs llama.cpp, side by side: for every weight type, the same GGUF file is measured by
# `endless bench` and by llama.cpp's `llama-bench` one right after the other, with the same threads,
# prompt and decode lengths, so the ratio survives a noisy machine. Prints a Markdown table.
#
#   bench/compare_llamacpp.sh LLAMA_BENCH [MODELS_DIR]
#     env: ENDLESS_BIN (build/endless) TYPES ("F32 F16 BF16 Q8_0 Q4_0 Q4_K Q6_K") THREADS (2)
#          PROMPTS (128,512) GEN (64) REPS (3) RAW_DIR (where the JSON of every run is kept)
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
raw=${RAW_DIR:-$dir/raw}
mkdir -p "$dir" "$raw"

for type in $types; do
  model=$dir/synth-254m-$type.gguf
  if [ ! -f "$model" ]; then
    echo "writing $model" >&2
    "$bin" synth --dim 1024 --layers 16 --heads 16 --kv-heads 8 --ff 2816 --vocab 32000 --ctx 4096 \
      --type "$type" -o "$model" >&2
  fi
  echo "measuring $type" >&2
  # llama.cpp first, then endless, for each type: both see the machine in the same state.
  "$llama_bench" -m "$model" -t "$threads" -p "$prompts" -n "$gen" -r "$reps" -mmp 0 -o json \
    >"$raw/llama-$type.json" 2>"$raw/llama-$type.log"
  "$bin" bench -m "$model" -t "$threads" -p "$prompts" -n "$gen" -r "$reps" --no-mmap --json \
    >"$raw/endless-$type.json" 2>"$raw/endless-$type.log"
done

python3 - "$raw" "$threads" $types <<'EOF'
import json, sys
raw, threads, types = sys.argv[1], sys.argv[2], sys.argv[3:]
def rows(path):
    out = {}
    for r in json.load(open(path)):
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        out[test] = (r["avg_ts"], r["stddev_ts"])
    return out
print(f"| type | test | llama.cpp t/s | endless t/s | endless / llama.cpp |")
print("|---|---|---:|---:|---:|")
for t in types:
    a, b = rows(f"{raw}/llama-{t}.json"), rows(f"{raw}/endless-{t}.json")
    for test in sorted(a, key=lambda s: (s[:2] != "pp", int(s[2:]))):
        if test not in b: continue
        (la, ls), (ea, es) = a[test], b[test]
        print(f"| {t} | {test} | {la:.1f} ± {ls:.1f} | {ea:.1f} ± {es:.1f} | **{ea / la:.2f}x** |")
print(f"\n{threads} threads each.")
EOF
