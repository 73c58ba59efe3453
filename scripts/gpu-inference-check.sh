#!/usr/bin/env bash
# GPU checks of model inference, run on the GPU host from the repository
# root with a binary built elsewhere, after ONNX Runtime's GPU libraries were
# staged there (../shared/gpu/stage-ort-gpu.sh: one run per part, then this
# script with .device/ort/final carried along):
#   1. `tapstream gpu-score` on the benchmark file (device-resident scoring,
#      CUDA provider alone): for each variant, the flagged rows and scores of
#      the device path (model input on the GPU → ONNX Runtime through an
#      I/O binding → flag_scores → flagged rows back) against the host path
#      (`infer` on the same rows), once with the rows uploaded and once with
#      the GPU feature kernels' own model input left on the device; then
#      rows/s with the features already on the device at 64 Ki, 256 Ki and
#      1 Mi rows per batch, naming the GPU (output in gpu-score.txt, JSON on
#      its last line);
#   1b. `tapstream run` on the benchmark file with GPU features scored in
#      the flow workers on the device ([inference] placement = "workers",
#      CUDA provider alone), against a run with CPU features and the CPU
#      provider (and one with the CPU model in the workers): alerts compared
#      by scripts/compare-alerts.py (same flows, classes, scores within
#      1e-4; a flow alerted by one run only within 1e-4 of the threshold),
#      and each run's end-to-end rate;
#   2. `tapstream bench` with the CUDA execution provider alone (no CPU
#      fallback) for the FP32, FP16 and INT8 variants of the default model,
#      at two batch sizes, and the CPU provider on the same host; inference
#      here goes through host copies (the pipeline's consumer scores host
#      rows);
#   3. `tapstream model report` on the CIC held-out split, when this build
#      has that command, which compares every precision on every provider.
# Prepare here: scripts/gpu-prepare.sh (binary + captures in .gpu/), and
#   tar -C ../shared/data -cJf .gpu/cic.tar.xz flows/cicids2017_improved_sample
# There: scripts/gpu-inference-check.sh [BIN]. Results go to $OUT or
# target/gpu-inference. GPU_SCORE_ONLY=1 runs step 1 alone (for a short
# device budget).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
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

if "$bin" gpu-score --help > /dev/null 2>&1; then
  step "device-resident scoring: checks and rows/s with features on the device"
  printf '[inference]\nproviders = ["cuda"]\n' > "$work/gpu-score.toml"
  # cudarc needs libcuda and NVRTC 13.0 (both also on unpack.sh's path).
  LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/cuda-13.0/targets/x86_64-linux/lib \
    "$bin" gpu-score --config "$work/gpu-score.toml" --pcap "$work/bench.pcap" > "$out/gpu-score.txt" 2>&1 || status=1
  grep -v '^{' "$out/gpu-score.txt"
fi
step "tapstream run: GPU features scored on the device in 8 flow workers, against CPU features and the CPU provider"
printf '[pipeline]\nworkers = 8\n' > "$work/run-cpu.toml"
printf '[inference]\nproviders = ["cuda"]\nplacement = "workers"\n[pipeline]\nworkers = 8\n[gpu]\ndevice = "cuda"\n' > "$work/run-gpu.toml"
"$bin" run --alerts flows --config "$work/run-cpu.toml" --pcap "$work/bench.pcap" --eve "$work/cpu.json" \
  --summary-json "$out/run-cpu.json" > /dev/null 2> "$out/run-cpu.txt" || status=1
TAPSTREAM_LOG=tapstream=info LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/cuda-13.0/targets/x86_64-linux/lib \
  "$bin" run --alerts flows --config "$work/run-gpu.toml" --pcap "$work/bench.pcap" --eve "$work/gpu.json" \
  --summary-json "$out/run-gpu.json" > /dev/null 2> "$out/run-gpu.txt" || status=1
echo "GPU shards scoring on the device: $(grep -c 'scoring_on_device=true' "$out/run-gpu.txt") of 8"
# The same CPU run with the model in the flow workers instead of the
# consumer thread: identical alerts, and what moving inference gains here.
printf '[inference]\nplacement = "workers"\n[pipeline]\nworkers = 8\n' > "$work/run-cpu-workers.toml"
"$bin" run --alerts flows --config "$work/run-cpu-workers.toml" --pcap "$work/bench.pcap" --eve "$work/cpu-workers.json" \
  --summary-json "$out/run-cpu-workers.json" > /dev/null 2> "$out/run-cpu-workers.txt" || status=1
grep -E "flows scored|end to end|failed|error" "$out/run-cpu.txt" "$out/run-cpu-workers.txt" "$out/run-gpu.txt"
for other in cpu-workers gpu; do
  python3 scripts/compare-alerts.py "$work/cpu.json" "$work/$other.json" | tee "$out/run-compare-$other.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
done

if [ "${GPU_SCORE_ONLY:-0}" = 1 ]; then
  step "done (status $status; GPU_SCORE_ONLY)"
  exit $status
fi

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
