#!/usr/bin/env bash
# The GPU measurements of issue 13 in one run of under 10 minutes on one H200. Never run by the tests.
#
#   DATA=../shared/data OUT=runs/gpu benchmarks/gpu_study.sh
#
# 1. 20 timed steps (3 warm-up) of plain training and of online distillation from 2 teachers at
#    the 345M preset in bf16, batch 32 x 128, vocabulary 16000: OUT/bench_345m.jsonl and the table
#    OUT/RESULTS_gpu.md (tokens/s, MFU against the measured bf16 peak, peak GPU memory).
# 2. configs/gpu_study/study.yaml: teachers, baseline and student of a 100M-parameter Llama on the
#    BabyLM 2023 text in bf16, scored on BLiMP filtered, the supplement and EWoK: OUT/gpu-study
#    (its report in OUT/gpu-study/report) and OUT/gpu_study_summary.md (per role: loss, scores,
#    tokens/s, MFU). Stopped after STUDY_TIMEOUT seconds (default 420); rerun to resume it.
#
# DATA holds babylm_text_2023_partial/ and babylm_eval_2024/ laid out as ../shared/data. Through
# the device tool, copy them into an ignored folder and carry it:
#   mkdir -p gpu_data/babylm_eval_2024 && cp -r ../shared/data/babylm_text_2023_partial gpu_data/ &&
#   cp -r ../shared/data/babylm_eval_2024/{blimp,supplement,ewok}_filtered gpu_data/babylm_eval_2024/
#   run(command="DATA=gpu_data benchmarks/gpu_study.sh", carry=["gpu_data"])   # OUT defaults to $OUT there
# GPU_STUDY_SMOKE=1 shrinks everything to seconds, to check the script on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/gpu}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
[ -d "$DATA/babylm_text_2023_partial/train_10M" ] || { echo "gpu_study.sh: no $DATA/babylm_text_2023_partial/train_10M" >&2; exit 2; }
EVAL=$DATA/babylm_eval_2024
TASKS="{blimp_filtered: $EVAL/blimp_filtered, blimp_supplement: $EVAL/supplement_filtered, ewok: $EVAL/ewok_filtered}"
if [ "${GPU_STUDY_SMOKE:-0}" = 1 ]; then
  BENCH=(--configs tiny --steps 2 --warmup 1 --vocab 1000)
  SHRINK=(--set tokenizer.vocab_size=1000 --set train.max_steps=3 --set train.eval_every=2 --set "train.precision='no'"
          --set model.hidden_size=64 --set model.intermediate_size=128 --set model.num_hidden_layers=1
          --set model.num_attention_heads=4 --set model.num_key_value_heads=2)
else
  BENCH=(--configs babyllama2-345m --steps 20 --warmup 3 --vocab 16000)
  SHRINK=()
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>/dev/null || echo "no nvidia-smi" > "$OUT/gpu.csv"

echo "== 1. 345M preset: plain training and online distillation (2 teachers), bf16"
$PY benchmarks/bench_train.py "${BENCH[@]}" --precisions bf16 --modes plain,distill --teachers 2 --batch 32 --seq 128 \
  --work "$OUT/bench_work" --write "$OUT/RESULTS_gpu.md" | tee "$OUT/bench_345m.jsonl"
rm -rf "$OUT/bench_work"   # the random-weight teachers: 1.4 GB each

echo "== 2. 100M study: teachers, baseline, student on the 2023 text, bf16"
status=0
timeout "${STUDY_TIMEOUT:-420}" $PY -m babyllama study configs/gpu_study/study.yaml --set "run_dir=$OUT/gpu-study" \
  --set "corpus.path=$DATA/babylm_text_2023_partial/train_10M" --set "evaluation.zero_shot.tasks=$TASKS" \
  "${SHRINK[@]}" 2>&1 | tee "$OUT/gpu_study.log" || status=$?
$PY benchmarks/gpu_study_summary.py "$OUT/gpu-study" "$OUT/bench_345m.jsonl" | tee "$OUT/gpu_study_summary.md"
exit $status
