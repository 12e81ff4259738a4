#!/usr/bin/env bash
# ProDA base-to-novel: train the prompt bank on the base classes with 16 shots per class (100 epochs, batch 4);
# the end-of-training test is on the base classes. Novel accuracy: the matching test script.
# usage: DATA=/path/to/datasets bash scripts/proda/base2new_train.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=ProDA
CFG=vit_b16_c16_ep100_batch4
SHOTS=16

run_base2new_train "${TRAINER}" "${CFG}" "${SHOTS}" "${DATASET}" "${SEED}"
