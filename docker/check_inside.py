"""What docker/check.sh runs inside the built image (a RUN step of docker/check.Dockerfile):
one digits epoch through the image's ``bnn-lab``, then its packed model through
``bnn-lab-eval``, both offline (no network where the engine can remove it, and every proxy
variable pointed at a closed port). Prints ``check: KEY VALUE`` lines that check.sh reads;
exits non-zero on any failure, which fails the check build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

RUN_DIR = Path("/tmp/bnn-lab-check")
TRAIN = ["bnn-lab", "data=digits", "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={RUN_DIR}"]
EVALUATE = ["bnn-lab-eval", f"path={RUN_DIR}", "--json"]
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, a fetch fails at once
OFFLINE = {
    **{key: CLOSED for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")},
    "NO_PROXY": "",
    "no_proxy": "",
    "WANDB_MODE": "offline",
    "HF_HUB_OFFLINE": "1",
}


def say(key: str, value) -> None:
    print(f"check: {key} {value}", flush=True)


def timed(command: list[str]) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **OFFLINE})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout, seconds


def main() -> None:
    app = Path("/app")
    # the console scripts are the image's own virtualenv's, and the build context left the
    # host's virtualenv, git folder and run outputs out (.dockerignore)
    for script in ("bnn-lab", "bnn-lab-eval"):
        found = shutil.which(script)
        if found != f"/app/.venv/bin/{script}":
            sys.exit(f"{script} resolves to {found}, not the image's /app/.venv/bin/{script}")
    home = dict(line.split(" = ", 1) for line in (app / ".venv/pyvenv.cfg").read_text().splitlines() if " = " in line)
    if not Path(home["home"], "python3").exists():
        sys.exit(f"/app/.venv was made by a Python that the image does not have ({home['home']})")
    leaked = [name for name in (".git", "outputs", "multirun", "wandb") if (app / name).exists()]
    if leaked:
        sys.exit(f"the build context brought {leaked} into /app: .dockerignore must leave them out")

    import torch

    say("python", sys.version.split()[0])
    say("torch", f"{torch.__version__} (CUDA {torch.version.cuda})")

    out, seconds = timed(TRAIN)
    metrics = json.loads((RUN_DIR / "metrics.json").read_text())
    say("train_seconds", f"{seconds:.1f}")
    say("test_acc", metrics["test/acc"])
    say("run_packed_test_acc", metrics["packed/test_acc"])

    out, seconds = timed(EVALUATE)
    evaluated = json.loads(out.strip().splitlines()[-1])
    say("eval_seconds", f"{seconds:.1f}")
    say("packed_test_acc", evaluated["packed/test_acc"])
    say("threads", os.cpu_count())


if __name__ == "__main__":
    main()
