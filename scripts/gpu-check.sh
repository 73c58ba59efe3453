#!/usr/bin/env bash
# GPU checks of the CUDA feature extractor, run on the GPU host from the
# repository root with a binary built elsewhere (the host builds nothing):
#   1. parity: for every Ethernet capture under pcaps/benign and pcaps/attack,
#      and for the throughput benchmark file, the GPU's feature rows against
#      the CPU extractor's (integers exact, floats within 1e-12 relative;
#      bit-identical is expected, see tools/src/gpu/mod.rs), and the device's model
#      input against select_features (bit-identical f32);
#   2. throughput: `tapstream bench` on the benchmark file with the GPU
#      feature stage (pinned records → device → rows and model input; one
#      shard and several at once, with a per-phase device profile) and end to
#      end (decode on all cores), for three GPU batch sizes, and the CPU
#      extractor on the same host for comparison.
# The benchmark file is rebuilt there by `tapstream make-bench-pcap`, which
# writes a file byte-identical to ../shared/bench/make-bench-pcap.sh's.
#
# Prepare here (scripts/gpu-prepare.sh), then on the GPU host:
#   scripts/gpu-check.sh [BIN] [CAPTURES.tar.xz]
# Results go to $OUT (the device tool's output folder) or target/gpu-check.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bin=${1:-.gpu/tapstream}
archive=${2:-.gpu/ether-captures.tar.xz}
out=${OUT:-target/gpu-check}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/cuda-13.0/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
step() { echo "== $*" | tee -a "$out/steps.txt"; }

step "machine"
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv; nproc; grep -m1 "model name" /proc/cpuinfo; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

step "unpack captures"
python3 -c "import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$archive" "$work/data" || exit 1
# ONNX Runtime for the end-to-end run: the host's Python onnxruntime (CPU).
ort=$(python3 -c "import onnxruntime,os,glob; print((glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__),'capi','libonnxruntime.so*')) or [''])[0])" 2>/dev/null)
[ -n "$ort" ] && export ORT_DYLIB_PATH=$ort
echo "ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-unset}" >> "$out/machine.txt"

step "parity: every Ethernet capture under pcaps/benign and pcaps/attack"
"$bin" parity "$work/data/pcaps/benign" "$work/data/pcaps/attack" > "$out/parity-captures.txt" 2>&1 || status=1
tail -n 5 "$out/parity-captures.txt"

step "benchmark file"
"$bin" make-bench-pcap --data "$work/data" --out "$work/bench.pcap" > "$out/bench-file.txt" 2>&1 || status=1
cat "$out/bench-file.txt"
sha256sum "$work/bench.pcap" | tee -a "$out/bench-file.txt"

step "parity: benchmark file"
"$bin" parity "$work/bench.pcap" > "$out/parity-bench.txt" 2>&1 || status=1
tail -n 3 "$out/parity-bench.txt"

# Batch size trades latency for throughput (0 workers = auto). The log lines
# say how long the GPU and each shard took to set up.
for spec in 65536:0 262144:0 1048576:0; do
  batch=${spec%:*} workers=${spec#*:}
  step "bench, GPU features, batch_records=$batch, workers=$workers (0 = auto)"
  printf '[gpu]\nbatch_records = %d\n[pipeline]\nworkers = %d\n' "$batch" "$workers" > "$work/gpu.toml"
  TAPSTREAM_LOG=tapstream=info "$bin" bench --device cuda --config "$work/gpu.toml" --pcap "$work/bench.pcap" > "$out/bench-cuda-$batch.txt" 2>&1 || status=1
  grep -v "GPU shard ready" "$out/bench-cuda-$batch.txt"
  grep "GPU shard ready" "$out/bench-cuda-$batch.txt" | sed 's/.*ms=//' | sort -n | awk '{a[NR]=$1} END {if (NR) print "GPU shard set-up: " NR " shards, " a[1] "-" a[NR] " ms"}'
done

step "bench, CPU features, same host"
"$bin" bench --device cpu --pcap "$work/bench.pcap" > "$out/bench-cpu.txt" 2>&1 || status=1
cat "$out/bench-cpu.txt"

step "done (status $status)"
exit $status
