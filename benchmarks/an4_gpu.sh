#!/usr/bin/env bash
# AN4 on one GPU, in one call of the device tool: the recipe's data stages, the training
# throughput benchmark (bare step vs training loop), then training, averaging, decoding and
# scoring, each timed. Two steps:
#
#   bash benchmarks/an4_gpu.sh carry [CORPUS_DIR]   # here: AN4 as FLAC (42 MB) + wheels -> device_carry/
#   bash benchmarks/an4_gpu.sh run                  # on the GPU machine, from the repository root
#
# Device call: run(command="bash benchmarks/an4_gpu.sh run", carry=["device_carry/an4",
# "device_carry/wheels"], timeout_s=600).
#
# The device run needs no network and no install of asrkit: it puts the carried librosa and
# soundfile wheels on PYTHONPATH and an `asrkit` shim on PATH. Everything it measures is printed
# and copied to $OUT (logs, metrics.jsonl, the WER table). Options of `run`, as variables:
# CONF (default recipes/an4/conf/bigru_1a.yaml, the recipe's 1a), MODES (default "greedy beam rescore"),
# TIME_LIMIT (seconds for the training, default 300, so that the whole run fits one 600 s
# device call: data ~1 min, throughput <= 2 min + 3 x 40-batch bare steps (bf16, fp16, fp32),
# decoding ~1 min), DEVICE (default cuda; cpu to try the
# script here with a small CONF). Data dirs go to /tmp/an4_gpu_data, the experiment to
# /tmp/an4_gpu_exp: the recipe's own data/ and exp/ are left alone. THROUGHPUT=0 skips the
# throughput benchmark; avg=N averages N epochs instead of 10 (for short tries).
set -uo pipefail
cd "$(dirname "$0")/.."
carry=device_carry

if [ "${1:-}" = carry ]; then
  corpus=${2:-../shared/corpora/an4}
  mkdir -p "$carry/an4/etc" "$carry/wheels"
  cp "$corpus"/etc/* "$carry/an4/etc/"
  cp ../shared/device-wheels/*.whl "$carry/wheels/" 2>/dev/null || echo "no ../shared/device-wheels: copy librosa/soundfile wheels to $carry/wheels"
  python - "$corpus" "$carry/an4" <<'EOF'
import sys
from pathlib import Path

import soundfile as sf

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(src.glob("wav/*/*/*.sph"))
for path in files:
    out = dst / path.relative_to(src).with_suffix(".flac")
    if out.exists():
        continue
    out.parent.mkdir(parents=True, exist_ok=True)
    audio, rate = sf.read(path, dtype="int16")
    sf.write(out, audio, rate, subtype="PCM_16")
print(f"{len(files)} recordings as FLAC under {dst}")
EOF
  du -sh "$carry"
  exit 0
fi

if [ "${1:-}" != run ]; then
  sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 1
fi

conf=${CONF:-recipes/an4/conf/bigru_1a.yaml}
modes=${MODES:-greedy beam rescore}
limit=${TIME_LIMIT:-300}
out=${OUT:-/tmp/an4_gpu_out}
exp=/tmp/an4_gpu_exp
device=${DEVICE:-cuda}
export data=/tmp/an4_gpu_data  # read by recipes/common.sh
mkdir -p "$out" /tmp/bin
python3 -c "import librosa, soundfile" 2>/dev/null \
  || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$carry"/wheels/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
printf '#!/bin/sh\nexec python3 -m asrkit "$@"\n' > /tmp/bin/asrkit && chmod +x /tmp/bin/asrkit
export PATH=/tmp/bin:$PATH
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; } | tee "$out/machine.txt"
python3 -c "import sys, torch, librosa; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'librosa', librosa.__version__)" | tee -a "$out/machine.txt"
nproc --all | sed 's/^/cpu cores: /' | tee -a "$out/machine.txt"

seconds() { python3 -c "import time; print(f'{time.time():.1f}')"; }

t0=$(seconds)
bash recipes/an4/run.sh --corpus-dir "$carry/an4" --stop-stage 2 > "$out/data.log" 2>&1 || { tail -5 "$out/data.log"; exit 1; }
t1=$(seconds); echo "stages 0-2 (prepare, speed perturbation, features): $(python3 -c "print(round($t1 - $t0, 1))") s"

[ "${THROUGHPUT:-1}" = 0 ] || timeout 120 python3 benchmarks/train_throughput.py --data "$data/train_sp" --config "$conf" --device "$device" --epochs 2 2>&1 \
  | grep -v "^epoch" | tee "$out/throughput.txt"

if [ "${THROUGHPUT:-1}" != 0 ]; then  # which autocast runs the bare step fastest (cuDNN LSTM: bf16 or fp16?)
  for setting in train.amp_dtype=bf16 train.amp_dtype=fp16 train.amp=false; do
    timeout 60 python3 benchmarks/train_throughput.py --data "$data/train_sp" --config "$conf" --device "$device" \
      --epochs 0 --batches 40 --set "$setting" 2>&1 | grep -E "^\(a\)|Error" | sed "s/^/$setting: /"
  done | tee -a "$out/throughput.txt"
fi

rm -rf "$exp"
t2=$(seconds)
timeout "$limit" bash recipes/an4/run.sh --stage 3 --stop-stage 4 --conf "$conf" --exp "$exp" > "$out/train.log" 2>&1
status=$?
t3=$(seconds)
grep -E "^epoch (1|10|20|30|40|50|60)/|model:|average" "$out/train.log"
echo "training (stage 3) + averaging (stage 4): $(python3 -c "print(round($t3 - $t2, 1))") s wall, exit $status"
cp "$exp/metrics.jsonl" "$out/" 2>/dev/null
[ -e "$exp/avg_${avg:-10}.pt" ] || { tail -5 "$out/train.log"; exit 1; }

t4=$(seconds)
bash recipes/an4/run.sh --stage 5 --conf "$conf" --exp "$exp" --modes "$modes" > "$out/decode.log" 2>&1
t5=$(seconds)
sed -n '/== WER summary/,$p' "$out/decode.log" | sed "s#$exp/##" | tee "$out/wer.txt"
echo "decoding (stage 5, CPU of this machine): $(python3 -c "print(round($t5 - $t4, 1))") s"
echo "wall from raw audio to scored test: $(python3 -c "print(round($t5 - $t0, 1))") s (training alone $(python3 -c "print(round($t3 - $t2, 1))") s)"
