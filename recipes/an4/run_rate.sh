#!/usr/bin/env bash
# AN4 speaking rate (issue 28, item 3): at 1a's size, does CTC learn faster and slower speech
# better from tempo perturbation on the fly or from wider speed-perturbed copies?
#   - exp/bigru_1a_tempo:  conf/bigru_1a_tempo.yaml, 1a on data/train_sp (0.9/1.0/1.1 copies) plus
#     tempo 0.8-1.25 on the fly (pitch kept), 40 epochs;
#   - exp/bigru_1a_spwide: conf/bigru_1a.yaml on data/train_sp_wide (0.8/0.9/1.0/1.1/1.25 copies,
#     pitch moves with the rate, as Kaldi's perturb_data_dir_speed.sh), 24 epochs: the number of
#     updates 40 epochs over the three copies make.
# Both beside exp/bigru_1a (run.sh), decoded as it is, and measured on tempo 0.7-1.3 copies of test.
#
#   bash recipes/an4/run.sh --stop-stage 2          # data dirs, train_sp and features, shared with 1a
#   bash recipes/an4/run_rate.sh [--stage N] [--stop-stage N] [--force]
#   seed=1 bash recipes/an4/run_rate.sh             # another seed (train.seed), into <exp>_s1
#
# Stages: 0 the wide copies, 1 their features, 2 train both, side by side, one torch thread each
# (resumes an interrupted run), 3 average the 10 epochs with the lowest dev loss, 4 decode test
# (greedy; rescore + lexicon, beam 20), 5 benchmarks/robustness.py on tempo 0.7-1.3 (rescore +
# lexicon) for both and for exp/bigru_1a.
set -euo pipefail
{
cd "$(dirname "$0")"
seed=${seed:-0}
tag=$([ "$seed" = 0 ] || echo "_s$seed")
exps="exp/bigru_1a_tempo$tag exp/bigru_1a_spwide$tag"
beam=20
rates=clean,tempo_0.7,tempo_0.8,tempo_0.9,tempo_1.1,tempo_1.2,tempo_1.3
. ../common.sh

if run_stage 0 "speed-perturbed copies 0.8-1.25"; then
  if done_or_force "$data/train_sp_wide/text"; then echo "data ready in $data/train_sp_wide"; else
    asrkit data speed-perturb "$data/train" "$data/train_sp_wide" --factors 0.8,0.9,1.0,1.1,1.25
  fi
fi

if run_stage 1 "features of the wide copies"; then
  asrkit features "$data/train_sp_wide" --config conf/bigru_1a.yaml --nj "$nj"
fi

if run_stage 2 "train (tempo on the fly; wide copies), side by side"; then
  pids=()
  for out in $exps; do
    case $out in
      *tempo*) args=(--train "$data/train_sp" --config conf/bigru_1a_tempo.yaml) ;;
      *) args=(--train "$data/train_sp_wide" --config conf/bigru_1a.yaml --set train.epochs=24) ;;
    esac
    extra=()
    [ -e "$out/last.pt" ] && [ "$force" != true ] && extra=(--resume)
    asrkit train "${args[@]}" --dev "$data/dev" --out "$out" --set train.num_threads=1 --set train.seed="$seed" \
      "${extra[@]}" > "$out.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
fi

for exp in $exps; do
  if run_stage 3 "average ($exp)"; then
    if ! done_or_force "$exp/avg_$avg.pt" || [ "$exp/last.pt" -nt "$exp/avg_$avg.pt" ]; then
      asrkit average "$exp" --num "$avg" --by dev_loss
    fi
  fi
  if run_stage 4 "decode test ($exp)"; then
    decode_and_score test "$exp/avg_$avg.pt" greedy
    decode_and_score test "$exp/avg_$avg.pt" rescore lex --lexicon "$data/lang/lexicon.txt"
  fi
done

if run_stage 5 "speaking rate: tempo 0.7-1.3 copies of test"; then
  for exp in exp/bigru_1a $exps; do
    python ../../benchmarks/robustness.py "$exp/avg_$avg.pt" "$data/test" --mode rescore --beam "$beam" \
      --lexicon "$data/lang/lexicon.txt" --conditions "$rates" --json "$exp/rate.json"
  done
fi
exit
}
