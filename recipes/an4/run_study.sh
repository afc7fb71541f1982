#!/usr/bin/env bash
# The recurrent family on AN4: Elman, Jordan, GRU and LSTM, each uni- and bidirectional, at
# one parameter budget (encoder + CTC head of conf/study.yaml's 3 x 128 BiLSTM, +-10%), with
# the same attention decoder and the same shortened schedule (10 epochs of train_sp), plus an
# Elman row without gradient clipping.
#
#   bash recipes/an4/run_study.sh [--rows "lstm_bi elman_bi ..." | variants | all] [--stage N] [--stop-stage N]
#                                 [--corpus-dir DIR] [--force]
#
# Stages: 0-2 the data stages of run.sh (data dirs, speed perturbation, features; skipped when
# done), 3 train each row into exp/study/ROW (resumes), 4 decode dev and test with best.pt
# (greedy; beam 20 rescored by the attention decoder) and score, 5 gradient-through-time
# plots (exp/study/plots/ROW.png), 6 the table (exp/study/RESULTS.md).
# Rows: {elman,jordan,gru,lstm}_{bi,uni} and elman_bi_noclip (train.grad_clip 0), run by default;
# the encoder variants, run when named in --rows (or all four: --rows variants), each at the
# same budget: *_pyr (x2 stacking, then a pyramid after the first layer: LAS's pBLSTM, x4 in all),
# *_proj (a 128-unit projection between layers: ESPnet's BLSTMP), *_sub2 (x2 stacking, twice
# the frames).

set -euo pipefail
{
cd "$(dirname "$0")"
family_rows="lstm_bi elman_bi elman_bi_noclip gru_bi jordan_bi lstm_uni elman_uni gru_uni jordan_uni"
variant_rows="lstm_bi_pyr lstm_bi_proj lstm_bi_sub2 gru_bi_proj"
all_rows="$family_rows $variant_rows"
rows=$family_rows
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"
case "$rows" in variants) rows=$variant_rows ;; all) rows=$all_rows ;; esac
for row in $rows; do  # every row checked before any work starts
  case " $all_rows " in *" $row "*) ;; *) echo "unknown row $row (rows: $all_rows)" >&2; exit 1 ;; esac
done
conf=conf/study.yaml
root=exp/study
beam=20
. ../common.sh

if [ "$stage" -le 2 ]; then
  bash run.sh --stop-stage 2 ${corpus_dir:+--corpus-dir "$corpus_dir"} --nj "$nj"
fi

# row_options ROW: the --set options of a row (type, direction, encoder variant, width at the
# budget, clipping).
row_options() {
  local row=$1 type direction width variant=()
  type=${row%%_*}; [ "$type" = elman ] && type=rnn
  case "$row" in *_bi*) direction=true ;; *) direction=false ;; esac
  case "$row" in
    *_pyr) variant=(--set model.subsampling_factor=2 --set model.pyramid_layers=1) ;;
    *_proj) variant=(--set model.projection_size=128) ;;
    *_sub2) variant=(--set model.subsampling_factor=2) ;;
  esac
  width=$(python local/study.py width "$conf" "$data/train_sp/text" "$type" "$direction" "${variant[@]+"${variant[@]}"}")
  echo "--set model.rnn_type=$type --set model.bidirectional=$direction --set model.hidden_size=$width ${variant[*]+"${variant[*]}"}"
  case "$row" in *_noclip) echo "--set train.grad_clip=0" ;; esac
}

for row in $rows; do
  exp=$root/$row
  if run_stage 3 "train $row"; then
    if [ -e "$exp/last.pt" ] && [ "$force" != true ]; then
      asrkit train --train "$data/train_sp" --dev "$data/dev" --out "$exp" --resume
    else
      rm -rf "$exp"
      # shellcheck disable=SC2046  # the options are words
      asrkit train --train "$data/train_sp" --dev "$data/dev" --config "$conf" --out "$exp" $(row_options "$row")
    fi
  fi
  if run_stage 4 "decode $row"; then
    for set in dev test; do
      for mode in greedy rescore; do decode_and_score "$set" "$exp/best.pt" "$mode"; done
    done
  fi
  if run_stage 5 "gradient plot $row"; then
    mkdir -p "$root/plots"
    if ! done_or_force "$root/plots/$row.png" || [ "$exp/best.pt" -nt "$root/plots/$row.png" ]; then
      asrkit plot gradients "$exp" "$data/dev" --out "$root/plots/$row.png"
    fi
  fi
done

if run_stage 6 "results table"; then
  # shellcheck disable=SC2086
  python local/study.py table "$root" "$data/train_sp/text" $rows --plots plots > "$root/RESULTS.md"
  cat "$root/RESULTS.md"
fi
exit
}
