"""ImageNet-size (224x224, 1000 classes) parameter counts and binary/FP splits against the
published model summaries.

Sources: larq documentation's model summaries (larq/docs PR 85: binary_densenet45 13.9 M
parameters, 7.35 MiB with binary weights at 1 bit, 96.34 % of MACs binary) and the larq-zoo
model table (BinaryDenseNet28 5.15 M parameters, 4.12 MB; Bi-Real Net 11.99 M parameters,
4.03 MB). Larq counts memory like bnn_lab.summary: 1 bit per binary weight, 32 bits for the rest.
"""

import pytest

from bnn_lab.models import create
from bnn_lab.summary import summarize
from bnn_lab.surgery import binarize

PUBLISHED = {
    # name: (params, deployed MiB, binary-MAC ratio or None)
    "binary_densenet28": (5.15e6, 4.12, None),
    "binary_densenet45": (13.9e6, 7.35, 0.9634),
    "bireal18": (11.99e6, 4.03, None),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_imagenet_sizes_within_5_percent(name):
    params, mib, mac_ratio = PUBLISHED[name]
    model = create(name, 3, 1000, 224)
    binarize(model, "ste", {"keep_downsample": True, "activation": "identity"})
    totals = summarize(model, (3, 224, 224)).totals
    assert totals["params"] == pytest.approx(params, rel=0.05)
    assert totals["size_deployed_mb"] == pytest.approx(mib, rel=0.05)  # fixes the binary/FP split
    if mac_ratio is not None:
        ratio = totals["binary_macs"] / (totals["binary_macs"] + totals["fp_macs"])
        assert ratio == pytest.approx(mac_ratio, abs=0.005)
