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
{  # braces: bash reads the whole recipe before running it, so editing this file mid-run is safe
cd "$(dirname "$0")"
. ../common.sh  # options, and data=data exp=exp/bilstm conf=conf/bilstm.yaml avg=10

prepare_stage fsdd
model_stages "dev test"
exit
}
