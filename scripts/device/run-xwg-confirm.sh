#!/usr/bin/env bash
# On the GPU machine, .carry carried: the committed table of the card (B,
# with the fifteenth session's wgmma_expand entries) against the same table
# before them (A: .carry/h200-pre-xwg.json or .carry/h100-pre-xwg.json,
# `git show 9b40e77:specs/tuned/<card>.json`), over the rank-64 cases
# (ROUNDS, default 2, alternating). -> $OUT/xwg-confirm.tar.gz
set -uo pipefail
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
old=.carry/h100-pre-xwg.json
[[ $card == *H200* ]] && old=.carry/h200-pre-xwg.json
A=.carry:$old B=.carry FILTER=_R64 ROUNDS=${ROUNDS:-2} NAME=xwg-confirm \
  BENCH_LIMIT=${BENCH_LIMIT:-50} bash scripts/device/run-build-ab.sh 2>&1 | tail -3
