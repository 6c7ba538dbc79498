#!/usr/bin/env bash
# Benchmark of `endless serve`: aggregate decode speed of N sessions generating at once against one
# session alone, and time to first token under that load. Writes a Markdown table on stdout.
#
#   bench/server_bench.sh [ENDLESS_BIN] [MODEL]    (env: SESSIONS=8 TOKENS=64 THREADS=0)
#
# Without MODEL it makes the 254M-parameter synthetic model (dim 1024, 16 layers, 16 heads, 8 KV
# heads, FFN 2816, vocab 32000, Q4_0) in $BENCH_DIR (default /tmp/endless-bench).
set -euo pipefail
bin=${1:-./build/endless}
dir=${BENCH_DIR:-/tmp/endless-bench}
model=${2:-$dir/synth-254m.q4_0.gguf}
sessions=${SESSIONS:-8}
tokens=${TOKENS:-64}
threads=${THREADS:-0}
mkdir -p "$dir"
if [ ! -f "$model" ]; then
  "$bin" synth --arch llama --dim 1024 --layers 16 --heads 16 --kv-heads 8 --ff 2816 --vocab 32000 \
    --type q4_0 --seed 1 -o "$model" >&2
fi

rm -rf "$dir/sessions"
"$bin" serve -m "$model" -t "$threads" --port 0 --parallel $((sessions + 1)) --sessions-dir "$dir/sessions" \
  --snapshot-every 100000000 2>"$dir/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$dir/serve.log" | sed 's/.*://') && [ -n "$port" ] && break
  sleep 0.1
done
base="http://127.0.0.1:$port"
now() { date +%s.%N; }

# One streamed generation: prints "start first_token end tokens" (seconds since the epoch).
generate() {  # generate SESSION
  local start first="" end n=0 line
  start=$(now)
  while IFS= read -r line; do
    case "$line" in
      "data: [DONE]"*) ;;
      data:*'"finish_reason":null'*) n=$((n + 1)); [ -z "$first" ] && first=$(now) ;;
    esac
  done < <(curl -sN "$base/v1/sessions/$1/generate" \
             -d "{\"max_tokens\":$tokens,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}")
  end=$(now)
  echo "$start $first $end $n"
}

for i in $(seq 1 "$sessions"); do
  curl -s "$base/v1/sessions" -d "{\"id\":\"s$i\",\"system\":\"Session $i: a log of events, read as it grows.\"}" >/dev/null
done
sleep 1  # system prompts read

# Warm-up, then one session alone.
generate s1 >/dev/null
read -r s f e n < <(generate s1)
single=$(echo "($n - 1) / ($e - $f)" | bc -l)
single_ttft=$(echo "$f - $s" | bc -l)

# All sessions at once.
pids=()
for i in $(seq 1 "$sessions"); do generate "s$i" >"$dir/run.$i" & pids+=($!); done
wait "${pids[@]}"
first_tok=1e18; last_end=0; total=0; ttfts=()
for i in $(seq 1 "$sessions"); do
  read -r s f e n <"$dir/run.$i"
  total=$((total + n - 1))
  ttfts+=("$(echo "$f - $s" | bc -l)")
  first_tok=$(echo "if ($f < $first_tok) $f else $first_tok" | bc -l)
  last_end=$(echo "if ($e > $last_end) $e else $last_end" | bc -l)
done
aggregate=$(echo "$total / ($last_end - $first_tok)" | bc -l)
ttft_sorted=$(printf '%s\n' "${ttfts[@]}" | sort -g)
ttft_med=$(echo "$ttft_sorted" | sed -n "$(( (sessions + 1) / 2 ))p")
ttft_max=$(echo "$ttft_sorted" | tail -1)

# Time to first token of a new request arriving while the sessions decode.
pids=()
for i in $(seq 1 "$sessions"); do generate "s$i" >/dev/null & pids+=($!); done
sleep 2
probe_start=$(now)
probe_first=""
while IFS= read -r line; do
  case "$line" in data:*'"finish_reason":null'*) probe_first=$(now); break ;; esac
done < <(curl -sN "$base/v1/completions" -d '{"prompt":"A new request arrives while others decode.","max_tokens":4,"stream":true,"ignore_eos":true}')
probe_ttft=$(echo "$probe_first - $probe_start" | bc -l)
wait "${pids[@]}"

printf '| measure | value |\n|---|---|\n'
printf '| decode, 1 session alone | %.1f tokens/s |\n' "$single"
printf '| decode, %d sessions at once (aggregate) | %.1f tokens/s |\n' "$sessions" "$aggregate"
printf '| speed-up | %.2fx |\n' "$(echo "$aggregate / $single" | bc -l)"
printf '| time to first token, 1 session alone | %.3f s |\n' "$single_ttft"
printf '| time to first token, %d sessions starting together (median / max) | %.3f s / %.3f s |\n' "$sessions" "$ttft_med" "$ttft_max"
printf '| time to first token of a new request while %d sessions decode | %.3f s |\n' "$sessions" "$probe_ttft"
