#!/bin/bash
# The standing checks for a lent GPU machine, as one script (run from the repository root; the
# machine has no network, so it uses the torch installed there and this tree via PYTHONPATH):
#   1. the NCCL path: DDP and FSDP2 through the trainer on a one-rank NCCL group, exact with
#      --deterministic (benchmarks/gpu_distributed.py), and the tokens/s of each;
#   2. GPT-2 124M training throughput and MFU (benchmarks/gpu_gpt2.py).
# Results go to $OUT (or ./gpu-out) as JSON lines; the log to stdout.
#   bash tools/gpu_checks.sh [STEPS]
set -u
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
steps=${1:-60}
python -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0), '|', torch.cuda.device_count(), 'GPU(s)')"
echo "== NCCL: DDP / FSDP2 through the trainer, --deterministic, $steps steps"
timeout 300 python benchmarks/gpu_distributed.py --deterministic --steps "$steps" --json 2>&1 | tee "$out/distributed.log" | grep -v "it/s\]" | tail -30
tail -1 "$out/distributed.log" > "$out/distributed.json"
echo "== GPT-2 124M, bf16, compiled"
timeout 240 python benchmarks/gpu_gpt2.py --steps 20 --json 2>&1 | tee "$out/gpt2.log" | tail -8
tail -1 "$out/gpt2.log" > "$out/gpt2.json"
