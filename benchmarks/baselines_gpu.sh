#!/usr/bin/env bash
# The CIFAR-10 baselines a CPU budget cannot train (ResNet-20 to >= 91%, VGG-16, MobileNetV2),
# trained side by side on one GPU, each for BUDGET seconds: benchmarks/baselines.py times a few
# steps per model on the GPU (while the others run) and plans as many one-cycle epochs as fit.
# Data sets live on the GPU (data.DeviceLoader), bf16 autocast, batch 256.
#
#   OUT=/tmp/gpu BUDGET=380 DATA=../shared/datasets benchmarks/baselines_gpu.sh
#   python benchmarks/baselines.py --import-report /tmp/gpu/*.md   # back on the CPU host
#
# Each model writes its own report and model file to OUT; --import-report checks each file's
# sha256 against its row and replaces a checked-in file only by a better one. A file over
# 16 MiB (VGG-16 in float16) is also written as parts of 15 MiB (`cat NAME.part-* > NAME`).
set -euo pipefail
: "${OUT:?set OUT to the folder for the reports and model files}"
BUDGET=${BUDGET:-380}
DATA=${DATA:-../shared/datasets}
MODELS=${MODELS:-"resnet20:0.2 vgg16:0.1 mobilenetv2:0.2"}  # name:one-cycle peak lr at batch 256
PY=${PY:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export SLIMKIT_CACHE=${SLIMKIT_CACHE:-/tmp/slimkit-cache}
mkdir -p "$OUT"
# decode the JPEGs once, into the cache the trainers read
"$PY" -c "from slimkit import data; [data.load('cifar10', root='$DATA/cifar10-jpeg.tar.gz', split=s) for s in ('train', 'test')]"
pids=()
for m in $MODELS; do
  name=${m%%:*} lr=${m##*:}
  "$PY" benchmarks/baselines.py --models "$name" --device cuda --precision bf16 --batch-size 256 \
    --lr-"$name" "$lr" --epochs-for-budget "$BUDGET" --time-budget "${CUT:-$((BUDGET * 5 / 4))}" \
    --repeats 5 ${EXTRA:-} --data "$DATA" --ckpt-dir "$OUT" --out "$OUT/$name.md" --progress 2>&1 \
    | sed -u "s/^/[$name] /" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for f in "$OUT"/*.pt; do
  [ -e "$f" ] && [ "$(stat -c %s "$f")" -gt $((16 * 1024 * 1024)) ] && split -b 15M "$f" "$f.part-" && rm "$f"
done
ls -l "$OUT"
exit $status
