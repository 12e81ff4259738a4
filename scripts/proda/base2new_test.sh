#!/usr/bin/env bash
# ProDA base-to-novel: evaluate the base-class prompt bank of the matching train script on the NOVEL classes
# (--eval-only, epoch 100; the classifier is rebuilt from all prompts for the novel class names).
# usage: DATA=/path/to/datasets bash scripts/proda/base2new_test.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=ProDA
CFG=vit_b16_c16_ep100_batch4
SHOTS=16
LOADEP=100

run_base2new_test "${TRAINER}" "${CFG}" "${SHOTS}" "${LOADEP}" "${DATASET}" "${SEED}"
