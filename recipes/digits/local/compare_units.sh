#!/usr/bin/env bash
# Characters against sentencepiece units on digits, over seeds: trains conf/bilstm.yaml (characters)
# and conf/bpe.yaml (40 BPE pieces) with train.seed 0..N-1 into exp/units/<conf>_seed<k>, averages
# the last 10 epochs, decodes the test set (greedy), scores, and prints a table with each WER and
# the mean per config. Run after run.sh's data stages (bash run.sh --stop-stage 1).
#
#   bash recipes/digits/local/compare_units.sh [--seeds N]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=3
[ "${1:-}" = --seeds ] && seeds=$2
rows=""
for conf in bilstm bpe; do
  for seed in $(seq 0 $((seeds - 1))); do
    exp=exp/units/${conf}_seed$seed
    if [ ! -e "$exp/avg_10.pt" ]; then
      asrkit -q train --train data/train --dev data/dev --config conf/$conf.yaml --out "$exp" --set train.seed=$seed
      asrkit -q average "$exp" --num 10 --by last
    fi
    [ -e "$exp/decode_test/hyp" ] || asrkit -q decode "$exp/avg_10.pt" data/test --out "$exp/decode_test"
    asrkit eval data/test/text "$exp/decode_test/hyp" > /dev/null
    rows+="$(awk -v c="$conf" -v s="$seed" 'NR == 1 {print "| " c " | " s " | " $2 "% | " $15 "% |"}' "$exp/decode_test/wer")"$'\n'
  done
done
echo "| units | seed | test WER | test CER |"
echo "|---|---|---|---|"
printf "%s" "$rows"
printf "%s" "$rows" | awk -F'|' '{gsub(/[ %]/, "", $2); gsub(/[ %]/, "", $4); sum[$2] += $4; n[$2]++}
  END {for (c in sum) printf "| %s | mean of %d | %.2f%% | |\n", c, n[c], sum[c] / n[c]}' | sort
