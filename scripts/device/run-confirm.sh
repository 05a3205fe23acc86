#!/usr/bin/env bash
# On the GPU machine, .carry carried: the whole GPU suite, then a whole-bench
# A/B (2 rounds, alternating), on whichever card came.
#  H100: the table before this session's entries (.carry/before.json, A)
#        against the committed H100 table (B): the landed entries confirmed.
#  H200: the H200 table (A) against the H100 table renamed for the H200
#        (.carry/h100-as-h200.json, B; a table serves only the GPU it
#        names), for table_choice.py.
# Everything in $OUT/confirm.tar.gz.
set -uo pipefail
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then
  A=.carry B=.carry:.carry/h100-as-h200.json
else
  A=.carry:.carry/before.json B=.carry:specs/tuned/NVIDIA_H100_80GB_HBM3.json
fi
SUITE=1 SUITE_LIMIT=300 A=$A B=$B ROUNDS=2 NAME=confirm BENCH_LIMIT=80 \
  bash scripts/device/run-build-ab.sh
