#!/usr/bin/env bash
# The Fashion-MNIST 1W1A distillation study on one GPU, every run side by side:
#   phase 1: fmnist_fp and fmnist_bnn for each seed; the fmnist_fp run of the first seed is the
#            teacher (trained once, its cost counted separately: it is also an fp arm run)
#   phase 2: as soon as the teacher has finished, fmnist_bnn_kd for each seed, taught by it;
#            and, when phase 2 starts early enough (STUDY_VARIANT_BY seconds), the same with
#            the student initialized from the teacher's weights (distill.init_from_teacher=true)
# Every arm has the same schedule (40 epochs of 215 steps, batch 256): equal student steps.
# Training runs in bf16 mixed precision, NHWC; evaluation in float32, so that packed/test_acc
# (the bit-packed model on the GPU kernels) can be compared with test/acc exactly.
#
# Usage: bash sweeps/fmnist_kd_gpu.sh OUT_DIR [extra overrides for every run]
#   env: BNN_LAB (default: bnn-lab), SEEDS (default: "1 2 3"), STUDY_DEADLINE (seconds after
#        which every run still going is stopped, default 560), STUDY_VARIANT_BY (default 200)
# Then: bnn-lab-report OUT_DIR
set -u
out=${1:?usage: fmnist_kd_gpu.sh OUT_DIR [overrides...]}
shift
extra=("$@")
read -r -a seeds <<<"${SEEDS:-1 2 3}"
read -r -a bnn_lab <<<"${BNN_LAB:-bnn-lab}"
deadline=${STUDY_DEADLINE:-560}
variant_by=${STUDY_VARIANT_BY:-200}
common=(logger=csv trainer.precision=bf16-mixed channels_last=true trainer.benchmark=true export.device=auto
        trainer.enable_progress_bar=false)
mkdir -p "$out"
start=$SECONDS
declare -A pid

launch() {  # launch NAME OVERRIDES...: one run in the background, its output in OUT_DIR/NAME.log
  local name=$1
  shift
  local left=$((deadline - (SECONDS - start)))
  timeout --signal=TERM --kill-after=20 "$left" "${bnn_lab[@]}" "$@" "${common[@]}" "${extra[@]}" \
    "hydra.run.dir=$out/$name" >"$out/$name.log" 2>&1 &
  pid[$name]=$!
  echo "[$((SECONDS - start))s] started $name"
}

for s in "${seeds[@]}"; do
  launch "fp_s$s" experiment=fmnist_fp seed="$s"
  launch "bnn_s$s" experiment=fmnist_bnn seed="$s"
done

teacher_run=fp_s${seeds[0]}
wait "${pid[$teacher_run]}"
echo "[$((SECONDS - start))s] teacher $teacher_run finished (exit $?)"
best=$(ls "$out/$teacher_run"/checkpoints/best*.ckpt 2>/dev/null | head -n 1)
if [ -n "$best" ]; then
  cp "$best" "$out/teacher.ckpt"
  phase2=$((SECONDS - start))
  for s in "${seeds[@]}"; do
    launch "kd_s$s" experiment=fmnist_bnn_kd seed="$s" distill.teacher.ckpt="$out/teacher.ckpt"
  done
  if [ "$phase2" -le "$variant_by" ]; then
    for s in "${seeds[@]}"; do
      launch "kdinit_s$s" experiment=fmnist_bnn_kd seed="$s" distill.teacher.ckpt="$out/teacher.ckpt" \
        distill.init_from_teacher=true
    done
  fi
else
  echo "no teacher checkpoint in $out/$teacher_run: phase 2 skipped"
fi
wait
echo "[$((SECONDS - start))s] all runs ended"

python3 - "$out" <<'EOF'
import json, sys
from pathlib import Path

rows = []
for m in sorted(Path(sys.argv[1]).glob("*/metrics.json")):
    d = json.loads(m.read_text())
    rows.append((m.parent.name, d.get("test/acc"), d.get("val/acc"), d.get("packed/test_acc"), d.get("global_steps"),
                 d.get("wall_time_s")))
print(f"{'run':12s} {'test':>8s} {'val':>8s} {'packed':>8s} {'steps':>6s} {'wall s':>7s}")
for name, *vals in rows:
    print(f"{name:12s} " + " ".join(f"{v:8.4f}" if isinstance(v, float) and v < 1.5 else f"{v!s:>8s}" for v in vals))
EOF
