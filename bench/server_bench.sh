#!/usr/bin/env bash
# Benchmark of `endless serve`: aggregate decode speed of N sessions generating at once against one
# session alone, and time to first token under that load, from the server's own timings (the
# "timings" object of each answer), so the client's cost does not count. Prints a Markdown table.
# The two are measured in alternation, ROUNDS times (one alone, then all at once), and each is
# the best of its rounds: the machine's speed drifts, and a ratio of two runs minutes apart
# measures the drift as much as the server. Each round's own ratio is printed too, and their
# median.
#
#   bench/server_bench.sh [ENDLESS_BIN] [MODEL]    (env: SESSIONS=8 TOKENS=64 THREADS=0 ROUNDS=3 BENCH_DIR)
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
rounds=${ROUNDS:-3}
mkdir -p "$dir"
if [ ! -f "$model" ]; then
  "$bin" synth --arch llama --dim 1024 --layers 16 --heads 16 --kv-heads 8 --ff 2816 --vocab 32000 \
    --type q4_0 --seed 1 -o "$model" >&2
fi

rm -rf "$dir/sessions"
"$bin" serve -m "$model" --no-mmap -t "$threads" --port 0 --parallel $((sessions + 1)) --sessions-dir "$dir/sessions" \
  --snapshot-every 100000000 2>"$dir/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
port=
for _ in $(seq 1 600); do
  port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$dir/serve.log" | sed 's/.*://') && [ -n "$port" ] && break
  sleep 0.1
done
base="http://127.0.0.1:$port"
field() { grep -o "\"$1\":[-0-9.e+]*" | head -1 | sed 's/.*://'; }  # field NAME < json
calc() { echo "$*" | bc -l; }

generate() {  # generate SESSION > json
  curl -s "$base/v1/sessions/$1/generate" -d "{\"max_tokens\":$tokens,\"temperature\":0,\"ignore_eos\":true}"
}
generate_all() {  # generate_all PREFIX [TOKENS]: every session at once, answers in PREFIX.1 ... PREFIX.N
  # One client process sends them all: eight curl processes starting at once took tens of
  # milliseconds of CPU time each (libcurl and OpenSSL start-up), on the same two cores, while
  # the first sessions already decoded.
  local args=() n=${2:-$tokens}
  for i in $(seq 1 "$sessions"); do
    [ "$i" -gt 1 ] && args+=(--next)
    args+=(-s "$base/v1/sessions/s$i/generate" -d "{\"max_tokens\":$n,\"temperature\":0,\"ignore_eos\":true}"
      -o "$1.$i")
  done
  curl -Z --parallel-immediate --parallel-max "$sessions" "${args[@]}"
}

for i in $(seq 1 "$sessions"); do
  curl -s "$base/v1/sessions" -d "{\"id\":\"s$i\",\"system\":\"Session $i: a log of events, read as it grows.\"}" >/dev/null
done
# Warm-up of both measurements: one session alone (the system prompts are read meanwhile), then
# every session at once for a few tokens, so that the first round's batched steps do not pay
# alone for what any first batched step pays once (buffers sized for eight tokens, code paths).
generate s1 >/dev/null
generate_all "$dir/warm" 8

single=0; single_ttft=0; aggregate=0; ttft_med=0; ttft_max=0; ratios=(); in_order=()
for _ in $(seq 1 "$rounds"); do
  # Each round adds TOKENS to every session, so the later rounds attend deeper caches: attention
  # is each session's own work (batching shares the weights' reads, not the caches'), so the
  # ratio falls with depth. The depth of session 2 (as all but the first) is printed per round.
  depth=$(curl -s "$base/v1/sessions/s2" | field tokens_seen)
  # One session alone.
  r=$(generate s1)
  rate=$(field predicted_per_second <<<"$r")
  round_single=$rate
  if [ "$(calc "$rate > $single")" = 1 ]; then single=$rate; single_ttft=$(field ttft_ms <<<"$r"); fi

  # All sessions at once: each decodes while the others do.
  generate_all "$dir/run"
  decoded=0; window=0; ttfts=()
  for i in $(seq 1 "$sessions"); do
    n=$(field predicted_n <"$dir/run.$i"); ms=$(field predicted_ms <"$dir/run.$i")
    decoded=$((decoded + n - 1))
    [ "$(calc "$ms > $window")" = 1 ] && window=$ms
    ttfts+=("$(field ttft_ms <"$dir/run.$i")")
  done
  rate=$(calc "$decoded / ($window / 1000)")
  ratios+=("$(calc "$rate / $round_single")")
  in_order+=("$(printf '%.2fx @ %d' "${ratios[-1]}" "$depth")")
  if [ "$(calc "$rate > $aggregate")" = 1 ]; then
    aggregate=$rate
    sorted=$(printf '%s\n' "${ttfts[@]}" | sort -g)
    ttft_med=$(sed -n "$(( (sessions + 1) / 2 ))p" <<<"$sorted")
    ttft_max=$(tail -1 <<<"$sorted")
  fi
done

# A new request (a 12-token prompt) arriving while all sessions decode.
generate_all "$dir/load" &
load=$!
sleep 1
probe=$(curl -s "$base/v1/completions" -d '{"prompt":"A new request arrives while the others decode.","max_tokens":1}')
probe_ttft=$(field ttft_ms <<<"$probe")
wait "$load"

printf '| measure | value |\n|---|---|\n'
printf '| decode, 1 session alone (best of %d) | %.1f tokens/s |\n' "$rounds" "$single"
printf '| decode, %d sessions at once (aggregate, best of %d) | %.1f tokens/s |\n' "$sessions" "$rounds" "$aggregate"
printf '| speed-up (best / best) | %.2fx |\n' "$(calc "$aggregate / $single")"
# The same ratio within each round (one alone, then all at once, seconds apart), so a moment when
# the machine reads memory fast, which speeds up one session far more than eight, counts in both.
sorted_ratios=$(printf '%s\n' "${ratios[@]}" | sort -g)
printf '| speed-up per round (sorted) | %s |\n' "$(printf '%.2fx ' $sorted_ratios)"
printf '| speed-up, median of the rounds | %.2fx |\n' "$(sed -n "$(( (rounds + 1) / 2 ))p" <<<"$sorted_ratios")"
in_order_list=$(IFS=,; echo "${in_order[*]}" | sed 's/,/, /g')
printf '| speed-up per round, in order @ depth of the sessions | %s |\n' "$in_order_list"
printf '| time to first token, 1 session alone | %.0f ms |\n' "$single_ttft"
printf '| time to first token, %d sessions asking together (median / max) | %.0f ms / %.0f ms |\n' \
  "$sessions" "$ttft_med" "$ttft_max"
printf '| time to first token of a new 12-token request while %d sessions decode | %.0f ms |\n' \
  "$sessions" "$probe_ttft"
