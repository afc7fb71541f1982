# Shared by recipes/<corpus>/run.sh: option parsing and stage bookkeeping.
# Options: --stage N --stop-stage N --corpus-dir DIR --force (redo finished stages),
#          --conf FILE --exp DIR (another config and experiment dir), --modes "greedy beam rescore",
#          --nj N (feature extraction jobs).

# Layout every recipe uses (a recipe may set its own before sourcing this file).
data=${data:-data}            # data dirs
exp=${exp:-exp/bilstm}        # experiment dir
conf=${conf:-conf/bilstm.yaml}
avg=${avg:-10}                # epochs averaged for decoding
modes=${modes:-greedy}        # decode modes: greedy, beam (CTC prefix beam search), rescore (attention)
beam=${beam:-10}
nj=${nj:-2}                   # feature extraction jobs (one process each)

stage=${stage:-0}
stop_stage=${stop_stage:-100}
corpus_dir=${corpus_dir:-}
force=${force:-false}

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    --force) force=true; shift ;;
    --conf) conf=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --nj) nj=$2; shift 2 ;;
    -h|--help) sed -n '2,/^$/p' "$(basename "$0")" | sed 's/^# \{0,1\}//'; exit 0 ;;  # cd'ed to the recipe: $0 may be relative to elsewhere
    *) echo "unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done

# The recipe has cd'ed into its own folder: a relative --corpus-dir is relative to where it was called from.
case "$corpus_dir" in
  ""|/*) ;;
  *) corpus_dir="${OLDPWD:-$PWD}/$corpus_dir" ;;
esac

# run_stage N "description": true when stage N is selected by --stage/--stop-stage.
run_stage() {
  if [ "$1" -ge "$stage" ] && [ "$1" -le "$stop_stage" ]; then
    echo "== stage $1: $2"
    return 0
  fi
  return 1
}

# done_or_force FILE: true when FILE exists and --force was not given (the stage can be skipped).
done_or_force() {
  [ "$force" != true ] && [ -e "$1" ]
}

# train_or_resume [TRAIN_DIR]: train into $exp (on $data/train by default), resuming when a
# previous run left a last.pt there.
train_or_resume() {
  local extra=() train_dir=${1:-$data/train}
  if [ -e "$exp/last.pt" ]; then
    if [ "$force" = true ]; then rm -rf "$exp"; else extra=(--resume); fi
  fi
  asrkit train --train "$train_dir" --dev "$data/dev" --config "$conf" --out "$exp" "${extra[@]}"
}

# average_last N: average the last N epoch checkpoints into $exp/avg_N.pt (redone when training moved on).
average_last() {
  if ! done_or_force "$exp/avg_$1.pt" || [ "$exp/last.pt" -nt "$exp/avg_$1.pt" ]; then
    asrkit average "$exp" --num "$1" --by last
  fi
}

# decode_and_score SET CHECKPOINT [MODE [TAG DECODE_OPTION...]]: decode data/SET with CHECKPOINT
# (greedy, beam or rescore; TAG names a variant decoded with the extra options), then WER/CER.
decode_and_score() {
  local set=$1 model=$2 mode=${3:-greedy} tag=${4:-} dir
  shift $(( $# < 4 ? $# : 4 ))
  dir="$exp/decode_${set}_${mode}${tag:+_$tag}_$(basename "$model" .pt)"
  if ! done_or_force "$dir/hyp" || [ "$model" -nt "$dir/hyp" ]; then
    asrkit decode "$model" "$data/$set" --mode "$mode" --beam "$beam" --out "$dir" "$@"
  fi
  asrkit eval "$data/$set/text" "$dir/hyp"
}

# wer_table SET...: one line per decode dir of SET under $exp (its summary line from asrkit eval).
wer_table() {
  local set dir
  for set in "$@"; do
    for dir in "$exp"/decode_"${set}"_*; do
      [ -e "$dir/wer" ] && printf '%-48s %s\n' "$dir" "$(head -n 1 "$dir/wer")"
    done
  done
  return 0
}

# The stages every recipe shares.

# prepare_stage CORPUS: stage 0, data dirs under $data (skipped when $data/test/text exists).
prepare_stage() {
  if run_stage 0 "prepare $1"; then
    if done_or_force "$data/test/text"; then echo "data ready in $data"; else
      asrkit prepare "$1" --out "$data" ${corpus_dir:+--corpus-dir "$corpus_dir"} --download-dir "$data/downloads"
    fi
  fi
}

# model_stages "SET ...": stages 1 features, 2 train (resumes), 3 average the last $avg epochs,
# 4 decode and score each SET with the average.
model_stages() {
  if run_stage 1 "features"; then
    for set in train dev test; do asrkit features "$data/$set" --config "$conf" --nj "$nj"; done
  fi
  if run_stage 2 "train"; then
    train_or_resume
  fi
  if run_stage 3 "average the last $avg epochs"; then
    average_last "$avg"
  fi
  if run_stage 4 "decode and score ($modes)"; then
    for set in $1; do
      for mode in $modes; do decode_and_score "$set" "$exp/avg_$avg.pt" "$mode"; done
    done
    echo "== WER summary"
    wer_table $1
  fi
}
