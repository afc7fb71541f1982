#!/usr/bin/env bash
# yesno recipe: Kaldi's yesno corpus (60 recordings of 8 YES/NO words, 8 kHz).
#
#   bash recipes/yesno/run.sh [--stage N] [--stop-stage N] [--corpus-dir DIR] [--force]
#
# Stages: 0 prepare data dirs (download when --corpus-dir is absent), 1 features,
# 2 train (resumes an interrupted run), 3 average the last 10 epochs, 4 decode test and score.
# Finished stages are skipped unless --force. Outputs: data/ and exp/ in this folder.

set -euo pipefail
{  # braces: bash reads the whole recipe before running it, so editing this file mid-run is safe
cd "$(dirname "$0")"
. ../common.sh  # options, and data=data exp=exp/bilstm conf=conf/bilstm.yaml avg=10

prepare_stage yesno
model_stages "test"
exit
}
