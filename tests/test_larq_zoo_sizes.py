"""QuickNet and MeliusNet22 at ImageNet size (224x224, 1000 classes) against larq-zoo's
published table, converted with each option's own default policy (conf/arch/<name>.yaml).

larq-zoo's model table (QuickNet family: quicknet.py docstrings; MeliusNet22: meliusnet.py):
quicknet_small 12 655 688 parameters / 4.00 MB, quicknet 13 234 088 / 4.17 MB,
quicknet_large 23 342 248 / 5.40 MB, meliusnet22 6 944 584 / 3.88 MiB. Keras counts BN
running statistics as parameters and reports MiB; bnn_lab.summary counts trainable
tensors only (1 bit per binary weight, 32 bits otherwise), which stays within 5 %.
"""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bnn_lab.models import create
from bnn_lab.summary import summarize
from bnn_lab.surgery import binarize

ARCH = Path(__file__).resolve().parents[1] / "conf" / "arch"
PUBLISHED = {
    "quicknet_small": (12_655_688, 4.00),
    "quicknet": (13_234_088, 4.17),
    "quicknet_large": (23_342_248, 5.40),
    "meliusnet22": (6_944_584, 3.88),
}


def default_policy(name: str) -> dict:
    arch = OmegaConf.load(ARCH / f"{name}.yaml")
    return {
        "keep_downsample": arch.keep_downsample,
        "keep": list(arch.get("keep") or []),
        "activation": arch.binary_activation,
    }


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_larq_zoo_sizes_within_5_percent(name):
    params, mib = PUBLISHED[name]
    model = create(name, 3, 1000, 224)
    report = binarize(model, "ste", default_policy(name))
    assert "stem.conv" in report.kept and all(n.startswith(("sections", "features")) for n in report.binarized)
    totals = summarize(model, (3, 224, 224)).totals
    assert totals["params"] == pytest.approx(params, rel=0.05)
    assert totals["size_deployed_mb"] == pytest.approx(mib, rel=0.05)  # fixes the binary/FP split
