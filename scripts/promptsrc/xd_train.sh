#!/usr/bin/env bash
# PromptSRC cross-dataset: train on all classes of the source dataset (ImageNet in the paper) with 16 shots per class;
# the cross-dataset test script evaluates these weights on other datasets.
# Upstream referenced vit_b16_c2_ep5_batch4_4+4ctx_cross_datasets, which was never shipped; this points at the
# existing cross-dataset YAML instead.
# usage: DATA=/path/to/datasets bash scripts/promptsrc/xd_train.sh DATASET SEED
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require_args "DATASET SEED" 2 $#
DATASET=$1
SEED=$2
TRAINER=PromptSRC
CFG=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets
SHOTS=16

run_xd_train "${TRAINER}" "${CFG}" "${SHOTS}" "${DATASET}" "${SEED}"
