#!/usr/bin/env bash
# AN4 streaming (issue 30): the unidirectional GRU of conf/unigru_stream.yaml (1a's budget), with
# 2 frames of lookahead and without, trained as 1a is and streamed at 160, 320 and 640 ms chunks.
#
#   bash recipes/an4/run.sh --stop-stage 1          # data dirs and speed perturbation, shared with 1a
#   bash recipes/an4/run_stream.sh [--stage N] [--stop-stage N] [--force]
#   conf=conf/unigru_stream_running.yaml base=exp/unigru_stream_running suffix=_running lookaheads=2 \
#     bash recipes/an4/run_stream.sh      # the causal level normalisation (feature.level_norm: running)
#   seed=1 ... bash recipes/an4/run_stream.sh   # another seed (train.seed), into <exp>_s1
#
# Stages: 0 copies of train_sp, dev and test for the streaming features (data/<set>_stream: a data
# dir holds one feature config's features), 1 features, 2 train with lookahead 2
# (exp/unigru_stream) and without (exp/unigru_stream_la0), one torch thread each, 3 average the
# 10 epochs with the lowest dev loss, 4 offline decode and score (greedy; rescore + lexicon, beam
# 20), 5 stream the test set (benchmarks/streaming.py: WER, latency, real-time factor per chunk).
set -euo pipefail
{
cd "$(dirname "$0")"
conf=${conf:-conf/unigru_stream.yaml}
base=${base:-exp/unigru_stream}
suffix=${suffix:-_stream}  # the data dirs of this feature config: data/<set>$suffix
lookaheads=${lookaheads:-"2 0"}
seed=${seed:-0}  # train.seed; another than 0 trains into <exp>_s<seed>
beam=20
. ../common.sh

if run_stage 0 "data dirs for the streaming features"; then
  for set in train_sp dev test; do
    if done_or_force "$data/${set}${suffix}/wav.scp"; then continue; fi
    mkdir -p "$data/${set}${suffix}"
    cp "$data/$set"/{wav.scp,text,utt2spk,spk2utt} "$data/${set}${suffix}/"
  done
fi

if run_stage 1 "features"; then
  for set in train_sp dev test; do asrkit features "$data/${set}${suffix}" --config "$conf" --nj "$nj"; done
fi

for lookahead in $lookaheads; do
  out=$base$([ "$lookahead" = 2 ] || echo "_la$lookahead")$([ "$seed" = 0 ] || echo "_s$seed")
  if run_stage 2 "train (lookahead $lookahead)"; then
    extra=()
    [ -e "$out/last.pt" ] && [ "$force" != true ] && extra=(--resume)
    asrkit train --train "$data/train_sp${suffix}" --dev "$data/dev${suffix}" --config "$conf" --out "$out" \
      --set train.num_threads=1 --set model.lookahead=$lookahead --set train.seed=$seed "${extra[@]}"
  fi
  if run_stage 3 "average (lookahead $lookahead)"; then
    if ! done_or_force "$out/avg_$avg.pt" || [ "$out/last.pt" -nt "$out/avg_$avg.pt" ]; then
      asrkit average "$out" --num "$avg" --by dev_loss
    fi
  fi
  if run_stage 4 "offline decode (lookahead $lookahead)"; then
    exp=$out
    decode_and_score "test$suffix" "$out/avg_$avg.pt" greedy
    decode_and_score "test$suffix" "$out/avg_$avg.pt" rescore lex --lexicon "$data/lang/lexicon.txt"
  fi
  if run_stage 5 "stream the test set (lookahead $lookahead)"; then
    python ../../benchmarks/streaming.py "$out/avg_$avg.pt" "$data/test${suffix}" --chunk-ms 160,320,640
    python ../../benchmarks/streaming.py "$out/avg_$avg.pt" "$data/test${suffix}" --chunk-ms 160,320,640 \
      --mode rescore --beam "$beam" --lexicon "$data/lang/lexicon.txt"
  fi
done
exit
}
