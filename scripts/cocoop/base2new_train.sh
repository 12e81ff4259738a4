#!/usr/bin/env bash
# CoCoOp base-to-novel: train on the base classes with 16 shots per class (base-to-novel protocol);
# the end-of-training test is on the base classes. Novel accuracy: the matching test script.
# usage: DATA=/path/to/datasets bash scripts/cocoop/base2new_train.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=CoCoOp
CFG=vit_b16_c4_ep10_batch1_ctxv1
SHOTS=16

run_base2new_train "${TRAINER}" "${CFG}" "${SHOTS}" "${DATASET}" "${SEED}"
