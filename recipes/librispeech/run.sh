#!/usr/bin/env bash
# LibriSpeech recipe (OpenSLR 12): BiLSTM joint CTC/attention on sentencepiece units, decoded with
# a word 3-gram (the official pruned one when --lm-dir has it) and attention rescoring.
#
#   bash recipes/librispeech/run.sh [--corpus-dir DIR] [--lm-dir DIR] [--train-sets "train-clean-100"]
#                                   [--nproc N] [--speed-perturb] [--conf FILE] [--exp DIR] [--stage N]
#                                   [--stop-stage N] [--nj N] [--force]
#
# Stages: 0 download (without --corpus-dir; official archives, MD5-checked, resumed) and prepare
# one data dir per subset, then data/train = the --train-sets combined (with --speed-perturb, and
# 0.9/1.1 speed copies as Kaldi and ESPnet make them, FLAC under data/train/audio); 1 features of train and
# the four evaluation sets (--nj jobs); 2 sentencepiece units trained on the training text
# (data/lang_bpe, type and size from the config's tokenizer section); 3 word LM: --lm-dir's
# official 3-gram.pruned.1e-7.arpa.gz when there, else a 3-gram built from the training text
# (data/lang/lm_3gram.arpa.gz); 4 train (validation on dev-clean; --nproc N starts N processes
# with torchrun: nccl on GPUs, gloo on the CPU; resumes); 5 average the 10 epochs with the lowest
# dev loss; 6 decode dev-clean, dev-other, test-clean and test-other (greedy; beam 20 + LM;
# beam 20 + LM rescored by the attention decoder) and score; 7 the WER table (exp/NAME/RESULTS.md).
# 960 h: --train-sets "train-clean-100 train-clean-360 train-other-500" --conf conf/bilstm_960h.yaml.
# LM weight and word bonus: LM_WEIGHT (0.5) and WORD_BONUS (1.0) in the environment.

set -euo pipefail
{  # braces: bash reads the whole recipe before running it, so editing this file mid-run is safe
cd "$(dirname "$0")"
conf=${conf:-conf/bilstm_100h.yaml}
exp=${exp:-exp/bilstm_100h}
beam=20
train_sets="train-clean-100"
eval_sets="dev-clean dev-other test-clean test-other"
lm_dir=""
nproc=1
speed_perturb=false
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --train-sets) train_sets=$2; shift 2 ;;
    --lm-dir) lm_dir=$2; shift 2 ;;
    --nproc) nproc=$2; shift 2 ;;
    --speed-perturb) speed_perturb=true; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"
. ../common.sh
case "$lm_dir" in ""|/*) ;; *) lm_dir="${OLDPWD:-$PWD}/$lm_dir" ;; esac
lang=$data/lang_bpe
lm_weight=${LM_WEIGHT:-0.5}
word_bonus=${WORD_BONUS:-1.0}

if run_stage 0 "prepare LibriSpeech ($train_sets; $eval_sets)"; then
  subsets=$(echo $train_sets $eval_sets | tr ' ' ',')
  missing=""
  for set in $train_sets $eval_sets; do done_or_force "$data/$set/text" || missing=1; done
  if [ -n "$missing" ]; then
    asrkit prepare librispeech --out "$data" --subsets "$subsets" ${corpus_dir:+--corpus-dir "$corpus_dir"} \
      --download-dir "$data/downloads"
  fi
  if ! done_or_force "$data/train/text"; then
    # shellcheck disable=SC2046  # one data dir per word
    if [ "$speed_perturb" = true ]; then
      asrkit data combine "$data/train_1.0" $(for set in $train_sets; do echo "$data/$set"; done)
      asrkit data speed-perturb "$data/train_1.0" "$data/train" --factors 0.9,1.0,1.1
    else
      asrkit data combine "$data/train" $(for set in $train_sets; do echo "$data/$set"; done)
    fi
  fi
fi

if run_stage 1 "features"; then
  for set in train $eval_sets; do asrkit features "$data/$set" --config "$conf" --nj "$nj"; done
fi

if run_stage 2 "sentencepiece units"; then
  if ! done_or_force "$lang/tokenizer.model"; then
    read -r model_type vocab_size < <(python -c "from asrkit.config import load_config
t = load_config('$conf').tokenizer; print(t.model_type, t.vocab_size)")
    asrkit tokenizer train "$data/train" --out "$lang" --model-type "$model_type" --vocab-size "$vocab_size"
  fi
fi

lm=$data/lang/lm_3gram.arpa.gz
if [ -n "$lm_dir" ] && [ -s "$lm_dir/3-gram.pruned.1e-7.arpa.gz" ]; then lm=$lm_dir/3-gram.pruned.1e-7.arpa.gz; fi
if run_stage 3 "word LM ($lm)"; then
  if [ "$lm" = "$data/lang/lm_3gram.arpa.gz" ] && ! done_or_force "$lm"; then
    asrkit lm build "$data/train" --out "$lm" --order 3
  fi
fi

if run_stage 4 "train ($nproc process(es))"; then
  launch=(asrkit)
  if [ "$nproc" -gt 1 ]; then launch=(python -m torch.distributed.run --standalone --nproc_per_node "$nproc" -m asrkit); fi
  if [ -e "$exp/last.pt" ] && [ "$force" != true ]; then
    "${launch[@]}" train --train "$data/train" --dev "$data/dev-clean" --out "$exp" --resume
  else
    rm -rf "$exp"
    "${launch[@]}" train --train "$data/train" --dev "$data/dev-clean" --config "$conf" --out "$exp" \
      --set tokenizer.model="$lang"
  fi
fi

if run_stage 5 "average the $avg epochs with the lowest dev loss"; then
  if ! done_or_force "$exp/avg_$avg.pt" || [ "$exp/last.pt" -nt "$exp/avg_$avg.pt" ]; then
    asrkit average "$exp" --num "$avg" --by dev_loss
  fi
fi

if run_stage 6 "decode and score"; then
  for set in $eval_sets; do
    decode_and_score "$set" "$exp/avg_$avg.pt" greedy
    for mode in beam rescore; do
      decode_and_score "$set" "$exp/avg_$avg.pt" "$mode" lm --lm "$lm" --lm-weight "$lm_weight" \
        --word-bonus "$word_bonus"
    done
  done
fi

if run_stage 7 "results table"; then
  {
    echo "| set | decoding | WER | CER |"
    echo "|---|---|---|---|"
    for set in $eval_sets; do
      for dir in "$exp"/decode_"${set}"_*; do
        [ -e "$dir/wer" ] || continue
        how=${dir#"$exp"/decode_"${set}"_}
        awk -v s="$set" -v d="${how%_avg_*}" 'NR == 1 {print "| " s " | " d " | " $2 "% | " $15 "% |"}' "$dir/wer"
      done
    done
  } > "$exp/RESULTS.md"
  cat "$exp/RESULTS.md"
fi
exit
}
