#!/usr/bin/env bash
# Every GPU figure issue 13 asks for, in one run of about 6-8 minutes on one H200:
#   1-3. ours against the reference loop (`ratio:`) with ours in fp32, bf16 and auto (the precision
#        measured for this student), batches padded to multiples of 64 (distill.pad_multiple);
#   4.   ours in bf16 with the old padding (multiples of 8), to show what the fixed widths save;
#   5.   ours as 1, 2, 4 and 8 processes sharing the GPU: combined features/s, its ratio to one process
#        and paper-preset trials per GPU-hour (the figure that sets sweep_paper.yaml's max_concurrent
#        and resources_per_trial.gpu: 1/N).
# Each step also prints model FLOP/s against the matmul peak it measures.
#
# The device machine cannot read ../shared: first, here, copy the teacher (weights in fp16, to fit the
# 64 MiB carry limit; loaded back as fp32) and the data into .cache/devcarry (ignored by git):
#     bash bench/gpu_check.sh prepare
# then run on the device machine, carrying that folder (e.g. the device tool's carry: [".cache/devcarry"]):
#     bash bench/gpu_check.sh
# Results: logs and JSON files in $OUT (when set) or bench/results/gpu-h200/issue13/.
set -u
cd "$(dirname "$0")/.."
CARRY=.cache/devcarry
if [ "${1:-}" = "prepare" ]; then
    mkdir -p "$CARRY/teacher" "$CARRY/data"
    python - <<'EOF'
from pathlib import Path
import shutil
import torch
from safetensors.torch import load_file, save_file
source, target = Path("../shared/models/teacher-minilm-l6-squad2"), Path(".cache/devcarry/teacher")
for path in source.iterdir():
    if path.suffix != ".safetensors":
        shutil.copy(path, target / path.name)
weights = load_file(source / "model.safetensors")
save_file({name: (t.half() if t.is_floating_point() else t).contiguous() for name, t in weights.items()},
          target / "model.safetensors", metadata={"format": "pt"})
shutil.copy("../shared/data/squad2/train.json", ".cache/devcarry/data/train.json")
print("prepared", sum(p.stat().st_size for p in Path(".cache/devcarry").rglob("*") if p.is_file()) // 2**20, "MiB")
EOF
    exit $?
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RESULTS="${OUT:-bench/results/gpu-h200/issue13}"
mkdir -p "$RESULTS"
TEACHER="${TEACHER:-$CARRY/teacher}"
DATA="${DATA:-$CARRY/data/train.json}"
COMMON=(--device cuda --teacher "$TEACHER" --data "$DATA" --max-examples 2000)
started=$(date +%s)

run() {  # run NAME SECONDS ARGS...: one bench call with a time limit; its log and JSON go to $RESULTS
    local name=$1 limit=$2
    shift 2
    echo "== $name: python bench/distill_throughput.py ${COMMON[*]} $* (at $(( $(date +%s) - started ))s)"
    timeout "$limit" python bench/distill_throughput.py "${COMMON[@]}" "$@" --out "$RESULTS/$name.json" \
        > "$RESULTS/$name.log" 2>&1
    echo "   exit $?"
    grep -E "^(features|precision auto|reference|ours|ratio|matmul|concurrent)" "$RESULTS/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  git rev-parse HEAD 2>/dev/null; } > "$RESULTS/environment.txt" 2>&1
cat "$RESULTS/environment.txt"

run fp32 100 --precision fp32 --steps 300
run bf16 100 --precision bf16 --steps 300
run auto 120 --precision auto --steps 300
run bf16_pad8 100 --precision bf16 --steps 300 --pad-multiple 8
run concurrent 300 --precision auto --steps 200 --no-reference --concurrent 1,2,4,8
echo "== done in $(( $(date +%s) - started ))s; results in $RESULTS"
