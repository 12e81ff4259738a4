#!/usr/bin/env bash
# Reproduce PromptKD's cross-dataset table (paper Table 2): every target dataset x seeds 1-3 through
# xd_train.sh (the ImageNet teacher distilled on each target's unlabeled images). Finished runs are skipped,
# unfinished ones resume. Then: python parse_test_res.py output/<dataset>/PromptKD
# usage: DATA=/path/to/datasets bash scripts/promptkd/reproduce_xd.sh [DATASET ...]
#        (default: the 10 target datasets of Table 2; SEEDS="1 2 3" overrides the seeds)
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

DATASETS=(caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101)
if [[ $# -gt 0 ]]; then
    DATASETS=("$@")
fi
run_each_dataset_and_seed "PromptKD cross-dataset" "${SCRIPTS_DIR}/promptkd/xd_train.sh" "${DATASETS[@]}"
