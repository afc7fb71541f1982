#!/usr/bin/env bash
# AN4 recipe: CMU alphanumeric census database (948 train + 130 test utterances, 16 kHz SPHERE).
#
#   bash recipes/an4/run.sh [--stage N] [--stop-stage N] [--corpus-dir DIR] [--force]
#                           [--conf FILE] [--exp DIR] [--modes "greedy beam rescore"]
#
# Stages: 0 prepare data dirs (train 848, dev = first 100 of the official train, test 130),
# 1 speed perturbation of train (0.9/1.0/1.1, offline FLAC copies), 2 features,
# 3 train (joint CTC/attention, resumes an interrupted run), 4 average the 10 epochs
# with the lowest dev loss, 5 decode test and dev (greedy, beam 20, attention rescoring of the
# beam's 20-best; beam and rescore also with the corpus dictionary as closed vocabulary, "lex")
# and score.
# Finished stages are skipped unless --force. Outputs: data/ and exp/ in this folder.

set -euo pipefail
{  # braces: bash reads the whole recipe before running it, so editing this file mid-run is safe
cd "$(dirname "$0")"
conf=conf/bigru_1a.yaml
exp=exp/bigru_1a
modes="greedy beam rescore"
beam=20
. ../common.sh

prepare_stage an4

if run_stage 1 "speed perturbation (0.9, 1.0, 1.1)"; then
  if done_or_force "$data/train_sp/text"; then echo "data ready in $data/train_sp"; else
    asrkit data speed-perturb "$data/train" "$data/train_sp" --factors 0.9,1.0,1.1
  fi
fi

if run_stage 2 "features"; then
  for set in train_sp dev test; do asrkit features "$data/$set" --config "$conf" --nj "$nj"; done
fi

if run_stage 3 "train"; then
  train_or_resume "$data/train_sp"
fi

if run_stage 4 "average the $avg epochs with the lowest dev loss"; then
  if ! done_or_force "$exp/avg_$avg.pt" || [ "$exp/last.pt" -nt "$exp/avg_$avg.pt" ]; then
    asrkit average "$exp" --num "$avg" --by dev_loss
  fi
fi

if run_stage 5 "decode and score ($modes)"; then
  for set in test dev; do
    for mode in $modes; do decode_and_score "$set" "$exp/avg_$avg.pt" "$mode"; done
    if [ -s "$data/lang/lexicon.txt" ]; then  # closed vocabulary: etc/an4.dic, copied by stage 0
      for mode in $modes; do
        [ "$mode" = greedy ] || decode_and_score "$set" "$exp/avg_$avg.pt" "$mode" lex --lexicon "$data/lang/lexicon.txt"
      done
    fi
  done
  echo "== WER summary"
  wer_table test dev
fi
exit
}
