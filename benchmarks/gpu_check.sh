#!/usr/bin/env bash
# The one check a GPU machine gets: nvidia-smi, the GPU tests (pytest -m gpu), the GPU benchmark and a DDP run over
# every visible GPU, about 4-6 min.
#   bash benchmarks/gpu_check.sh            # from anywhere; results also land in $OUT (else test-artifacts/gpu)
# It installs nothing: it needs a python3 with torch, torchvision, numpy and pytest (PYTHON picks another), and runs
# the package from this checkout. The widget's ipywidgets and bqplot are not needed: the core imports without them.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-test-artifacts/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/nvidia-smi.txt"
"$py" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__,
          "cuda", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())' 2>&1 | tee "$out/versions.txt"
# time limits, so that one hung test cannot eat the machine's few minutes and leave the benchmark unrun
timeout -k 10 240 "$py" -m pytest -q -rA -m gpu -p no:cacheprovider -o timeout=90 tests/test_gpu.py 2>&1 \
  | tee "$out/gpu-tests.txt"
tests=${PIPESTATUS[0]}
# --device cuda: fail loudly, rather than fall back to the CPU check, where CUDA does not come up
timeout -k 10 200 "$py" benchmarks/gpu.py --device cuda --json "$out/gpu-bench.json" 2>&1 | tee "$out/gpu-bench.txt"
bench=${PIPESTATUS[0]}
# num_processes = every visible GPU (NCCL), spawned from this process
timeout -k 10 150 "$py" benchmarks/ddp.py --device cuda --epochs 2 --reps 2 2>&1 | tee "$out/ddp.txt"
ddp=${PIPESTATUS[0]}
echo "gpu tests: exit $tests; gpu benchmark: exit $bench; ddp: exit $ddp; files in $out"
exit $(( tests != 0 || bench != 0 || ddp != 0 ))
