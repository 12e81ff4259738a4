#!/usr/bin/env bash
# CoCoOp cross-dataset: evaluate the ImageNet-trained weights of the matching xd train script (epoch 10) on DATASET
# (all classes, --eval-only).
# usage: DATA=/path/to/datasets bash scripts/cocoop/xd_test.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=CoCoOp
CFG=vit_b16_c4_ep10_batch1_ctxv1
SHOTS=16
LOADEP=10

run_xd_test "${TRAINER}" "${CFG}" "${SHOTS}" "${LOADEP}" "${DATASET}" "${SEED}"
