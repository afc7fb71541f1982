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
cd "$(dirname "$0")"
. ../common.sh

data=data
exp=exp/bilstm
conf=conf/bilstm.yaml
avg=10  # epochs averaged for decoding

if run_stage 0 "synthesise the corpus"; then
  if done_or_force "$data/test/text"; then echo "data ready in $data"; else
    asrkit prepare digits --out "$data"
  fi
fi

if run_stage 1 "features"; then
  for set in train dev test; do asrkit features "$data/$set" --config "$conf"; done
fi

if run_stage 2 "train"; then
  train_or_resume
fi

if run_stage 3 "average the last $avg epochs"; then
  average_last "$avg"
fi

if run_stage 4 "decode and score"; then
  decode_and_score test "$exp/avg_$avg.pt"
fi

if run_stage 5 "transcribe one file"; then
  wav=$(head -n 1 "$data/test/wav.scp" | cut -d' ' -f2)
  echo "reference:  $(head -n 1 "$data/test/text" | cut -d' ' -f2-)"
  echo "transcript: $(asrkit -q transcribe "$exp/avg_$avg.pt" "$wav")"
fi
