#!/usr/bin/env bash
# PromptSRC cross-dataset: evaluate the ImageNet-trained weights of the matching xd train script (epoch 20) on DATASET
# (all classes, --eval-only).
# Upstream referenced vit_b16_c2_ep5_batch4_4+4ctx_cross_datasets, which was never shipped; this points at the
# existing cross-dataset YAML instead.
# usage: DATA=/path/to/datasets bash scripts/promptsrc/xd_test.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=PromptSRC
CFG=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets
SHOTS=16
LOADEP=20

run_xd_test "${TRAINER}" "${CFG}" "${SHOTS}" "${LOADEP}" "${DATASET}" "${SEED}"
