#!/usr/bin/env bash
# FSDD recipe: Free Spoken Digit Dataset (3000 recordings of single spoken digits, 6 speakers, 8 kHz).
#
#   bash recipes/fsdd/run.sh [--stage N] [--stop-stage N] [--corpus-dir DIR] [--force]
#
# Stages: 0 prepare data dirs (download when --corpus-dir is absent), 1 features,
# 2 train (resumes an interrupted run), 3 average the last 10 epochs, 4 decode dev and test
# and score.
# Official split: takes 0-4 test (300); dev carved from train (see asrkit/corpora/fsdd.py).
# Finished stages are skipped unless --force. Outputs: data/ and exp/ in this folder.

set -euo pipefail
cd "$(dirname "$0")"
. ../common.sh

data=data
exp=exp/bilstm
conf=conf/bilstm.yaml
avg=10  # epochs averaged for decoding

if run_stage 0 "prepare"; then
  if done_or_force "$data/test/text"; then echo "data ready in $data"; else
    asrkit prepare fsdd --out "$data" ${corpus_dir:+--corpus-dir "$corpus_dir"} --download-dir "$data/downloads"
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
  decode_and_score dev "$exp/avg_$avg.pt"
  decode_and_score test "$exp/avg_$avg.pt"
fi
