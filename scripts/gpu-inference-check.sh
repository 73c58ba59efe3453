#!/usr/bin/env bash
# GPU checks of model inference, run on the GPU host from the repository
# root with a binary built elsewhere, after ONNX Runtime's GPU libraries were
# staged there (../shared/gpu/stage-ort-gpu.sh: one run per part, then this
# script with .device/ort/final carried along):
#   1. `tapstream bench` with the CUDA execution provider alone (no CPU
#      fallback) for the FP32, FP16 and INT8 variants of the default model,
#      at two batch sizes, and the CPU provider on the same host; inference
#      here goes through host copies (device-resident features are not wired
#      to the engine yet);
#   2. `tapstream model report` on the CIC held-out split, when this build
#      has that command, which compares every precision on every provider.
# Prepare here: scripts/gpu-prepare.sh (binary + captures in .gpu/), and
#   tar -C ../shared/data -cJf .gpu/cic.tar.xz flows/cicids2017_improved_sample
# There: scripts/gpu-inference-check.sh [BIN]. Results go to $OUT or
# target/gpu-inference.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.gpu/tapstream}
out=${OUT:-target/gpu-inference}
mkdir -p "$out"
status=0
step() { echo "== $*" | tee -a "$out/steps.txt"; }

step "machine"
{ nvidia-smi -L; nproc; grep -m1 "model name" /proc/cpuinfo; } | tee "$out/machine.txt"

step "ONNX Runtime GPU libraries"
eval "$(bash .device/ort/final/unpack.sh)" || { echo "unpacking failed"; exit 1; }
echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH" | tee -a "$out/machine.txt"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -c "import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" .gpu/ether-captures.tar.xz "$work/data" || exit 1
[ -f .gpu/cic.tar.xz ] && python3 -c "import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" .gpu/cic.tar.xz "$work/data"
"$bin" make-bench-pcap --data "$work/data" --out "$work/bench.pcap" > /dev/null 2>&1 || exit 1

for provider in cuda cpu; do
  for batch in 16384 65536; do
    threads=1
    [ "$provider" = cpu ] && threads=$(nproc)
    printf '[inference]\nproviders = ["%s"]\nbatch_rows = %d\nintra_threads = %d\n' "$provider" "$batch" "$threads" > "$work/inf.toml"
    for model in models/cic-mlp.onnx models/cic-mlp-fp16.onnx models/cic-mlp-int8.onnx; do
      step "bench: $provider, $(basename "$model"), batch $batch, $threads intra-op threads"
      "$bin" bench --config "$work/inf.toml" --model "$model" --pcap "$work/bench.pcap" > "$work/b.txt" 2>&1 || status=1
      grep -E "^inference|^end to end|error" "$work/b.txt" | tee -a "$out/bench-inference.txt"
    done
  done
done

if "$bin" model report --help > /dev/null 2>&1 && [ -d "$work/data/flows" ]; then
  step "model report on the CIC held-out split (every precision, every provider)"
  "$bin" model report --data "$work/data/flows/cicids2017_improved_sample" --out "$out/report" > "$out/report.txt" 2>&1 || status=1
  tail -n 20 "$out/report.txt"
fi

step "done (status $status)"
exit $status
