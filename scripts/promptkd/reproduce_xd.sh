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
read -r -a SEED_LIST <<<"${SEEDS:-1 2 3}"

require_data
for dataset in "${DATASETS[@]}"; do
    require_dataset "${dataset}"
done
for seed in "${SEED_LIST[@]}"; do
    require_int SEED "${seed}"
done

for dataset in "${DATASETS[@]}"; do
    for seed in "${SEED_LIST[@]}"; do
        echo "=== PromptKD cross-dataset: ${dataset} seed ${seed}"
        bash "${SCRIPTS_DIR}/promptkd/xd_train.sh" "${dataset}" "${seed}"
    done
done
