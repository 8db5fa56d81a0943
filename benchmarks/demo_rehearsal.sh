#!/bin/bash
# Dress rehearsal of demo stages 0-4 (data+model, base SFT, curation labels, annealing, evaluation) with the library
# defaults, 1 thread per process, wall time per stage (imports included). Usage: benchmarks/demo_rehearsal.sh [WORK]
# Results: WORK/stages.txt (epoch seconds, stage, load) and WORK/results.jsonl. See docs/demo_feasibility.md.
set -e
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
B="$PY benchmarks/demo_feasibility.py"
W=${1:-/tmp/r4b_demo_rehearsal}
mkdir -p "$W"
t() { echo "$(date +%s.%N) $1 load=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$W/stages.txt"; }
t start
$B setup --work "$W" > "$W/setup.log" 2>&1; t setup
$B sft --work "$W" --name base --data "$W/data/bimodal_sft.jsonl" --steps 800 --eval-every 200 > "$W/base.log" 2>&1; t base
$B label --work "$W" --annotator "$W/base/step-800" --name lab > "$W/label.log" 2>&1; t label
$B sft --work "$W" --name anneal --init "$W/base/step-800" --data "$W/lab/anneal_sft.jsonl" --lr 1e-3 --warmup 10 \
    --steps 200 --eval-every 50 > "$W/anneal.log" 2>&1; t anneal
$B eval --work "$W" --model "$W/anneal/step-200" > "$W/eval.log" 2>&1; t eval
awk 'NR==1{p=$1} {printf "%-7s %6.1f s  %s %s %s %s\n", $2, $1-p, $3, $4, $5, $6; p=$1}' "$W/stages.txt"
