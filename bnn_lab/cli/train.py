"""``bnn-lab``: the Hydra app that trains one configuration (or a sweep with ``-m``).

In a sweep, a job whose run directory (or arm's tuning) another live process is training is
skipped, not an error: the same ``-m ... resume=true`` command started twice shares the sweep's
runs between the two processes, each taking the next run nobody has finished or started."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .. import config_resolvers  # noqa: F401  (resolvers of conf/)
from ..third_party import silence_known_noise
from ..training.safety.run_lock import RunDirInUse
from .errors import user_errors
from .overrides import check_composition, check_group_choices
from .resume import expand_resume


def find_conf_dir() -> Path:
    """The config groups: ``bnn_lab/conf`` where the package is installed from a wheel (package
    data), else ``conf/`` at the top of the source checkout (editable installs, PYTHONPATH)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "conf"
    return installed if installed.is_dir() else package.parent / "conf"


CONF_DIR = find_conf_dir()


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> float | None:
    with user_errors():
        from ..training.run import train
        from ..training.tuning import tune_arm

        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            cfg, tuning = tune_arm(cfg, run_dir, train)  # study.tune: the arm's best setting first
            metrics = train(cfg, run_dir, tuning=tuning)
        except RunDirInUse as exc:
            if HydraConfig.get().mode != RunMode.MULTIRUN:
                raise
            print(f"bnn-lab: skipped {run_dir.name}: {exc.holder}", flush=True)
            return None
        acc = metrics.get("test/acc")
        print(f"test/acc = {acc:.4f}  (run directory: {run_dir})", flush=True)
        return metrics.get("val/acc")  # what hyper-parameter sweepers optimize


def main() -> None:
    silence_known_noise()
    with user_errors():
        if not CONF_DIR.is_dir():
            raise FileNotFoundError(
                f"config folder {CONF_DIR} missing: reinstall bnn-lab (`pip install .` "
                "or `pip install -e .` in the repository)"
            )
        sys.argv[1:] = expand_resume(sys.argv[1:])  # resume=<run dir>: that run's own command line
        check_group_choices(sys.argv[1:], CONF_DIR)
        check_composition(sys.argv[1:], CONF_DIR)
    _app()


if __name__ == "__main__":
    main()
