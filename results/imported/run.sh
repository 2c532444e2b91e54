#!/usr/bin/env bash
# Issue 18, must-show 2 on real data: a checkpoint trained in PyTorch (the state-spaces S4D
# example model: 3 LayerNorm residual blocks, H = 32, N = 32) on sMNIST-10k, imported with the
# state-spaces layout, then PTQ, QAT fine-tuning and the integer export checked against fake
# quant. Each step skips what is already there.
#   bash results/imported/run.sh            post-norm (the example's default)
#   bash results/imported/run.sh prenorm    pre-norm (the example's --prenorm), imported with
#                                           a name map that says so (prenorm.toml)
# Needs the torch venv (.venv-torch: see shared/bench/peer_torch/SETUP.md) for the first step
# only, and `experiments fetch` for the data.
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${E:-target/release/experiments}
PY=${PYTHON:-.venv-torch/bin/python}
ROOT=${DATA_ROOT:-data}
case "${1:-postnorm}" in
  postnorm) D=results/imported/state-spaces-smnist10k; train=(); layout=(--layout state-spaces) ;;
  prenorm) D=results/imported/state-spaces-smnist10k-prenorm; train=(--prenorm)
    layout=(--name-map results/imported/prenorm.toml) ;;
  *) echo "usage: $0 [postnorm|prenorm]" >&2; exit 2 ;;
esac
[[ -f $D/model.safetensors ]] || $PY scripts/train-state-spaces-smnist.py --data "$ROOT/mnist10k" \
  --out "$D" --epochs 5 --threads 1 "${train[@]}"
[[ -f $D/float/model.json ]] || $E import --from "$D/model.safetensors" "${layout[@]}" \
  --dataset smnist10k --out "$D/float"
# s4q's float accuracy of the imported weights (convolution and recurrent mode) next to
# PyTorch's (torch_train.json).
[[ -f $D/eval.txt ]] || { $E eval --run "$D/float" --data-root "$ROOT" --mode convolution;
  $E eval --run "$D/float" --data-root "$ROOT" --mode recurrent; } > "$D/eval.txt"
[[ -f $D/ptq.json ]] || $E ptq --run "$D/float" --data-root "$ROOT" --spec w8a8,w4a6-a8x8 \
  --calib-batches 8 --batch-size 50 --out "$D/ptq.json"
# QAT w8a8 for 2 epochs (qat-w8a8) and, to see whether a longer fine-tune moves the integer
# agreement, for 4 (qat-w8a8-4ep; its cosine schedule is over 4 epochs).
for ep in 2 4; do
  q=$D/qat-w8a8; [[ $ep == 2 ]] || q=$D/qat-w8a8-${ep}ep
  if [[ ! -f $q/result.json ]]; then
    resume=(); [[ -d $q/checkpoints ]] && resume=(--resume)
    $E qat --run "$D/float" --data-root "$ROOT" --spec w8a8 --parameterization frozen-a \
      --epochs $ep --lr 1e-3 --batch-size 50 --calib-batches 8 --seed 0 --out-dir "$q" "${resume[@]}"
  fi
  [[ -f $q/deploy-check.json ]] || $E deploy-check --run "$q" --data-root "$ROOT" \
    --test-limit 2000 --batch-size 100 --out "$q/deploy-check.json"
done
