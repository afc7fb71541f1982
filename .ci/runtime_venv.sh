#!/usr/bin/env bash
# The runtime without PyTorch, installed by README's "Without PyTorch" line into a fresh venv: it must
# hold no torch, and transcribe an exported yesno model to what the checkpoint gives with torch.
#
#   bash .ci/runtime_venv.sh [YESNO_CORPUS_DIR]     (run from anywhere; uses the project's .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-$PWD/../shared/corpora/yesno}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. .venv/bin/activate
if ! bash recipes/yesno/run.sh --corpus-dir "$corpus" > "$work/recipe.log" 2>&1; then cat "$work/recipe.log"; exit 1; fi
model=recipes/yesno/exp/bilstm/avg_10.pt
asrkit -q export "$model" --out "$work/bundle"
mapfile -t wavs < <(awk '{print $2}' recipes/yesno/data/test/wav.scp | head -10)
for mode in greedy beam; do
  asrkit -q transcribe "$model" "${wavs[@]}" --mode "$mode" --format json > "$work/torch_$mode.json"
done
torch_size=$(du -sm "$(python -c 'import os, torch; print(os.path.dirname(torch.__file__))')" | cut -f1)
deactivate

line=$(grep -m1 '^pip install --no-deps \. && pip install' README.md)
python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
pip install -q --upgrade pip > /dev/null
eval "$line" > "$work/pip.log" 2>&1 || { cat "$work/pip.log"; exit 1; }
if python -c "import torch" 2> /dev/null; then echo "runtime venv: torch is installed" >&2; exit 1; fi
for mode in greedy beam; do
  asrkit -q transcribe "$work/bundle" "${wavs[@]}" --mode "$mode" --format json > "$work/ort_$mode.json"
  cmp "$work/torch_$mode.json" "$work/ort_$mode.json"
done
size=$(du -sm "$work/venv" | cut -f1)
echo "runtime venv: no torch, ${size} MB in all (torch alone: ${torch_size} MB); ${#wavs[@]} yesno files," \
     "greedy and beam transcripts equal the checkpoint's"
