python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH
# One prepared GPU benchmark run for issue #8 (bench/README.md): ~4-6 minutes on one H100/H200.
#   - distillation step, bf16, batch 8 and 256, 37 and 1000 classes: images/s, phase split, MFU, peak memory, and
#     the upstream algorithm (text tower every step) in the same process;
#   - measured optimisations (bench/ab.py, interleaved in one process): the teacher output cache, frozen towers
#     stored in bf16, fp32, TF32, unfused (math) attention; torch.compile in its own step (compile time bounded by
#     the step's limit) and with CUDA graphs (mode reduce-overhead) at batch 8;
#   - the data-loading pipeline on the machine's 16 CPU cores;
#   - evaluation: student with stored W vs upstream's teacher + student.
# Output: $OUT/bench_gpu.txt (everything) and one JSON per benchmark in $OUT.
# CPU check of this script's logic: PROMPTKD_BENCH_TINY=1 OUT=/tmp/gpu_run bash bench/gpu_run.sh
# (tiny models, small batches; every step still runs). Each step has its own time limit, and a failing or
# out-of-memory step is reported and the script goes on.
set -u -o pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=$PWD:${PYTHONPATH:-}
OUT=${OUT:-bench/results/gpu_run}
mkdir -p "$OUT"
TXT="$OUT/bench_gpu.txt"
: >"$TXT"

if [ -n "${PROMPTKD_BENCH_TINY:-}" ] && [ "${PROMPTKD_BENCH_TINY}" != "0" ]; then
    # tiny models (bench/common.py), small batches, fewer repetitions (appended: argparse keeps the last value),
    # generous limits (a loaded 2-core CPU needs ~30 s just to import torch)
    BIG="2 4"; EVAL="4 8"; FEW_EVAL="--warmup 1 --iters 2 --upstream-iters 1"
    FEW="$FEW_EVAL --split-iters 1"; FEW_DATA="--images 8 --workers 0 1 --epochs 1"; BUDGET=1800
    AB_LARGE=4; AB_SMALL=2; FEW_AB="--warmup 1 --iters 2"
    lim() { echo 300; }
else
    BIG="8 256"; EVAL="100 256"; FEW=""; FEW_EVAL=""; FEW_DATA=""; BUDGET=420
    AB_LARGE=256; AB_SMALL=8; FEW_AB=""
    lim() { echo "$1"; }  # a step's time limit in seconds
fi

DEADLINE=${BENCH_DEADLINE_S:-$BUDGET}  # the whole script ends within this many seconds (+10 s to kill a step)
step() {  # step NAME LIMIT_S ARGS... : run "python3 -m ARGS", log to $TXT, keep going on failure
    local name=$1 limit=$2; shift 2
    local left=$(( DEADLINE - SECONDS ))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 20 ]; then
        echo "=== $name: SKIPPED (only ${left}s left of the ${DEADLINE}s budget)" | tee -a "$TXT"
        return
    fi
    echo "=== $name (limit ${limit}s): python3 -m $*" | tee -a "$TXT"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" python3 -m "$@" 2>&1 | tee -a "$TXT"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $(( SECONDS - start ))s$([ "$rc" = 124 ] && echo ' (TIME LIMIT)')" | tee -a "$TXT"
    echo | tee -a "$TXT"
}

{
    echo "=== machine"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
    python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    python3 -c "import yacs, ftfy; print('yacs', yacs.__file__, 'ftfy', ftfy.__version__)"
    git rev-parse --short HEAD 2>/dev/null || echo "commit: (not a git checkout)"
    date -u
    echo
} 2>&1 | tee -a "$TXT"

# Steps in priority order; each is capped by what is left of the budget (a skipped step says so).
# 1. The required table: both algorithms, bf16, batch 8 and 256, 37 and 1000 classes.
step distill_bf16 "$(lim 150)" bench.distill --device auto --prec bf16 --batch-sizes $BIG --classes 37 1000 \
    --warmup 3 --iters 10 --upstream-iters 5 --split-iters 3 $FEW --json "$OUT/distill_bf16.json"
# 2. Optimisation candidates, our algorithm, 1000 classes: variants built in one process, timed steps interleaved
#    (reference: bf16 autocast with fp32 weights, as step 1).
#    teacher-cache: the teacher's features read back from a TEACHER_CACHE shard (target: >= 2x at batch 256).
step ab_large_batch "$(lim 80)" bench.ab --device auto --variants bf16 teacher-cache teacher-bf16 fp32 fp32-tf32 \
    math-attention --classes 1000 --batch $AB_LARGE --warmup 2 --iters 10 $FEW_AB --json "$OUT/ab_large_batch.json"
step ab_small_batch "$(lim 45)" bench.ab --device auto --variants bf16 teacher-cache teacher-bf16 frozen-bf16 \
    --classes 1000 --batch $AB_SMALL --warmup 3 --iters 20 $FEW_AB --json "$OUT/ab_small_batch.json"
# 3. torch.compile (TRAIN.COMPILE default) at both batches, then CUDA graphs (reduce-overhead) at batch 8, where
#    the step is launch-bound (target: >= 3x the 213 images/s of eager batch 8).
step distill_compile "$(lim 110)" bench.distill --device auto --prec bf16 --compile --batch-sizes $BIG \
    --classes 1000 --no-upstream --no-eval --warmup 3 --iters 10 --split-iters 3 $FEW --json "$OUT/distill_compile.json"
step distill_cudagraphs "$(lim 80)" bench.distill --device auto --prec bf16 --compile reduce-overhead \
    --batch-sizes $AB_SMALL --classes 1000 --no-upstream --no-eval --warmup 3 --iters 20 --split-iters 0 $FEW \
    --json "$OUT/distill_cudagraphs.json"
# 4. The input pipeline on the machine's CPU cores (8 and 16 workers against the step rate of step 1).
step dataloader "$(lim 60)" bench.dataloader --images 384 --workers 0 4 8 16 --epochs 2 --draft \
    $FEW_DATA --json "$OUT/dataloader.json"
# 5. Evaluation throughput, ours vs upstream (measured before; last).
step evaluate_bf16 "$(lim 60)" bench.evaluate --device auto --prec bf16 --batch-sizes $EVAL --classes 37 1000 \
    --warmup 3 --iters 10 --upstream-iters 5 $FEW_EVAL --json "$OUT/evaluate_bf16.json"
echo "=== all steps finished" | tee -a "$TXT"
