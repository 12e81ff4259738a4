#!/usr/bin/env bash
# Reproduce ProDA's base-to-novel row of the PromptKD results table: every dataset x seeds 1-3 through
# base2new_train.sh then base2new_test.sh. Finished runs are skipped, unfinished ones resume, so the script can
# be re-run after an interruption. Then: python parse_test_res.py output/base2new
# usage: DATA=/path/to/datasets bash scripts/proda/reproduce_base2new.sh [DATASET ...]
#        (default: the 11 datasets of the table; SEEDS="1 2 3" overrides the seeds)
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

DATASETS=(imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101)
if [[ $# -gt 0 ]]; then
    DATASETS=("$@")
fi
run_each_dataset_and_seed "ProDA base2novel" \
    "${SCRIPTS_DIR}/proda/base2new_train.sh" "${SCRIPTS_DIR}/proda/base2new_test.sh" -- "${DATASETS[@]}"
