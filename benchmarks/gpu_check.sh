#!/usr/bin/env bash
# Everything this project checks on one GPU, in one go (one call of a lent GPU machine):
#   1. the CUDA-only tests (nvJPEG decoding, GPU augmentation vs the CPU path, bf16 /
#      channels_last / torch.compile training runs, the benchmark's CUDA smoke run);
#   2. the training engine itself on the synthetic data at 224 px (images/s from its metrics.jsonl):
#      fine-tuning from uint8 images cached on the GPU, and step 1 reading VGGFace2-style
#      folders as JPEG bytes decoded by nvJPEG;
#   3. benchmarks/throughput.py --compile: every row of benchmarks/README.md.
# Logs and JSON go to $OUT (default ./gpu_out), each stage under its own time limit, so a run
# cut short still leaves what it measured. Run from the repository root:
#   bash benchmarks/gpu_check.sh
# Sizes for a quick try on a CPU: ARCH=senet_tiny SIZE=32 BATCH=16 STEPS=2 DEVICE=cpu SKIP_BENCH=1
# Parts: ENGINE_RUNS="step2 folders" (default both), BENCH_ARGS (e.g. --rows compiled), *_TIMEOUT.
set -o pipefail
OUT=${OUT:-gpu_out}
ARCH=${ARCH:-senet50} SIZE=${SIZE:-224} BATCH=${BATCH:-256} STEPS=${STEPS:-20} DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
mafer() { $PY -m mafer.cli "$@"; }
work=$(mktemp -d)

{ nvidia-smi -L 2>/dev/null; nproc
  $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  $PY -c "import timm; print('timm', timm.__version__)" 2>/dev/null || echo "timm: not importable"; } | tee "$OUT/machine.txt"

echo "== CUDA tests"
timeout "${TEST_TIMEOUT:-240}" $PY -m pytest -q -p no:cacheprovider tests/test_batch_augment.py \
    tests/test_image.py tests/test_benchmarks.py tests/test_train.py -k cuda 2>&1 | tee "$OUT/tests.log" | tail -n 15

echo "== training engine at $SIZE px ($ARCH, batch $BATCH, $STEPS steps)"
engine_rate() {  # median images/s of the logged training steps after the first (the median skips
                 # the steps that wait for a new epoch's loader workers)
    $PY - "$1" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl")]
rates = [r["images_per_s"] for r in rows if r["kind"] == "train"][1:]
print(f"{sys.argv[1].rsplit('/', 1)[-1]}: {statistics.median(rates or [0]):.1f} img/s "
      f"(median of {len(rates)} logged steps)")
EOF
}
common=(--arch "$ARCH" --image-size "$SIZE" --batch-size "$BATCH" --accum-steps 1 --max-steps "$STEPS"
        --val-per-epoch 1 --device "$DEVICE" --log-every 2 --no-progress)
runs=${ENGINE_RUNS:-step2 folders}
sets=$(echo "$runs" | sed -e 's/step2/rafdb/' -e 's/folders/vggface2/' -e 's/ /,/g')
timeout 60 $PY -m mafer.cli synth --out "$work/data" --scale demo --datasets "$sets" > "$OUT/engine.log" 2>&1
for run in $runs; do
    case $run in
        step2) args=(step2 --dataset rafdb) ;;
        folders) args=(step1 --mode base --dataset vggface2 --no-in-memory --workers 8) ;;
    esac
    timeout "${ENGINE_TIMEOUT:-60}" $PY -m mafer.cli "${args[@]}" --data-dir "$work/data" --out "$work/$run" \
        "${common[@]}" >> "$OUT/engine.log" 2>&1 || echo "$run: failed or timed out (see engine.log)"
    [ -f "$work/$run/metrics.jsonl" ] && engine_rate "$work/$run"
done | tee "$OUT/engine.txt"

if [ -z "$SKIP_BENCH" ]; then
    echo "== benchmarks/throughput.py"
    timeout "${BENCH_TIMEOUT:-340}" $PY benchmarks/throughput.py --compile $BENCH_ARGS --json "$OUT/throughput.json" \
        2>&1 | tee "$OUT/throughput.log" | grep -v "^\s*$" | tail -n 45
fi
rm -rf "$work"
