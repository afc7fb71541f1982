#!/usr/bin/env bash
# digits recipe, the main job: needs no network and no corpus.
# Synthesises a multi-voice spoken-digit corpus with eSpeak NG (pip install -e '.[demo]'),
# trains a BiLSTM-CTC model, decodes and scores the test voices (never heard in
# training), then transcribes one test file with the saved model alone.
#
#   bash recipes/digits/run.sh [--stage N] [--stop-stage N] [--force]
#
# Stages: 0 synthesise data dirs, 1 features, 2 train (resumes), 3 average the last 10
# epochs, 4 decode and score, 5 transcribe a file. Finished stages are skipped unless --force.

set -euo pipefail
{  # braces: bash reads the whole recipe before running it, so editing this file mid-run is safe
cd "$(dirname "$0")"
. ../common.sh  # options, and data=data exp=exp/bilstm conf=conf/bilstm.yaml avg=10

prepare_stage digits
model_stages "test"

if run_stage 5 "transcribe one file"; then
  wav=$(head -n 1 "$data/test/wav.scp" | cut -d' ' -f2)
  echo "reference:  $(head -n 1 "$data/test/text" | cut -d' ' -f2-)"
  echo "transcript: $(asrkit -q transcribe "$exp/avg_$avg.pt" "$wav")"
fi
exit
}
