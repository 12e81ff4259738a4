#!/usr/bin/env bash
# CoCoOp cross-dataset source training: ImageNet, all classes, 16 shots.
# Evaluate the weights on other datasets with xd_test.sh.
# usage: DATA=/path/to/datasets bash scripts/cocoop/xd_train.sh SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "SEED" 1 $#
SEED=$1
DATASET=imagenet
TRAINER=CoCoOp
CFG=vit_b16_c4_ep10_batch1_ctxv1
SHOTS=16

run_xd_train "${TRAINER}" "${CFG}" "${SHOTS}" "${DATASET}" "${SEED}"
