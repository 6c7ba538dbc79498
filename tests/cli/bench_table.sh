#!/usr/bin/env bash
# `endless bench` on a small random-weight model: one row per test (ppN, tgN, and tgNxS for S
# sequences decoding together; "@ dD" from a context of D tokens), JSON fields as documented, the
# arithmetic peak probe, and bad options refused.
source "$(dirname "$0")/lib.sh"

spec="dim=128,layers=2,heads=4,kv_heads=2,ff=256,vocab=300,type=q8_0"
"$ENDLESS_BIN" bench --synth "$spec" -p 16 -n 4 -s 1,3 -t 1 -r 1 --json >"$TMP/out.json" 2>"$TMP/err" ||
  fail "bench exited non-zero: $(cat "$TMP/err")"
python3 - "$TMP/out.json" <<'PY' || exit 1
import json, sys
rows = {r["test"]: r for r in json.load(open(sys.argv[1]))}
want = {"pp16": (16, 0, 1), "tg4": (0, 4, 1), "tg4x3": (0, 4, 3)}
if set(rows) != set(want):
    sys.exit(f"FAIL: tests {sorted(rows)}, expected {sorted(want)}")
for test, (n_prompt, n_gen, n_seq) in want.items():
    r = rows[test]
    if (r["n_prompt"], r["n_gen"], r["n_seq"]) != (n_prompt, n_gen, n_seq):
        sys.exit(f"FAIL: {test}: n_prompt/n_gen/n_seq {r['n_prompt']}/{r['n_gen']}/{r['n_seq']}")
    if not (r["avg_ts"] > 0 and len(r["samples_ts"]) == 1):
        sys.exit(f"FAIL: {test}: avg_ts {r['avg_ts']}, samples {r['samples_ts']}")
PY

"$ENDLESS_BIN" bench --synth "$spec" -p 0 -n 2 -s 1,2 -t 1 -r 1 >"$TMP/table" 2>&1 || fail "table run failed"
grep -q '| tg2 |' "$TMP/table" || fail "no tg2 row: $(cat "$TMP/table")"
grep -q '| tg2x2 |' "$TMP/table" || fail "no tg2x2 row: $(cat "$TMP/table")"

# -d: the tests start from a context of D tokens, named as llama-bench names them.
"$ENDLESS_BIN" bench --synth "$spec" -p 8 -n 2 -d 0,24 -t 1 -r 1 --json >"$TMP/depth.json" 2>"$TMP/err" ||
  fail "bench -d exited non-zero: $(cat "$TMP/err")"
python3 - "$TMP/depth.json" <<'PY' || exit 1
import json, sys
rows = {r["test"]: r for r in json.load(open(sys.argv[1]))}
want = {"pp8": 0, "tg2": 0, "pp8 @ d24": 24, "tg2 @ d24": 24}
if set(rows) != set(want):
    sys.exit(f"FAIL: tests {sorted(rows)}, expected {sorted(want)}")
for test, depth in want.items():
    if rows[test]["n_depth"] != depth or not rows[test]["avg_ts"] > 0:
        sys.exit(f"FAIL: {test}: n_depth {rows[test]['n_depth']}, avg_ts {rows[test]['avg_ts']}")
PY

# --peak: one row per multiply-add instruction this CPU has (/proc/cpuinfo's flags), each a rate.
"$ENDLESS_BIN" bench --peak -t 1 -r 1 --json >"$TMP/peak.json" 2>"$TMP/err" || fail "bench --peak exited non-zero: $(cat "$TMP/err")"
python3 - "$TMP/peak.json" <<'PY' || exit 1
import json, sys
rows = {r["peak_test"]: r for r in json.load(open(sys.argv[1]))}
flags = set()
for line in open("/proc/cpuinfo"):
    if line.startswith("flags"):
        flags = set(line.split(":", 1)[1].split())
        break
want = set()
if "avx512f" in flags:
    want.add("f32 fma (AVX-512)")
    if "avx512_bf16" in flags: want.add("bf16 dot (VDPBF16PS)")
    if "avx512_vnni" in flags: want.add("int8 dot (VPDPBUSD)")
elif "avx2" in flags and "fma" in flags:
    want.add("f32 fma (AVX2)")
if set(rows) != want:
    sys.exit(f"FAIL: peak tests {sorted(rows)}, expected {sorted(want)} from the CPU flags")
for name, r in rows.items():
    if r["threads"] != 1 or not (1 < r["best_gops"] < 1e5) or r["mean_gops"] > r["best_gops"] * (1 + 1e-9):
        sys.exit(f"FAIL: {name}: {r}")
PY

if "$ENDLESS_BIN" bench --synth "$spec" -s 0 >"$TMP/bad" 2>&1; then fail "-s 0 was accepted"; fi
grep -qi 'sequences' "$TMP/bad" || fail "-s 0: message does not name the option: $(cat "$TMP/bad")"
echo "ok"
