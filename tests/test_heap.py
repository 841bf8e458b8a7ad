"""Keeping freed tensor memory in the heap (bnn_lab.training.heap), measured by the kernel's
count of minor page faults over five training steps of a binary ResNet-20 (batch 64, after
five warm-up steps): with glibc's own thresholds its activations are faulted in again on
every step, after keep_freed_memory() at most a fraction of them.
Each case runs in a fresh interpreter: the thresholds are process-wide and cannot be undone."""
import json
import subprocess
import sys

import pytest

from bnn_lab.training.heap import keep_freed_memory

PATTERN = """
import json, resource, sys, torch, torch.nn.functional as F
from bnn_lab.bench.train_step import _model
from bnn_lab.training.heap import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.manual_seed(0)
model = _model("resnet20", "ste", False, 1, 28, 10, "cpu")  # binary ResNet-20, clipped STE
opt = torch.optim.Adam(model.parameters())
x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))

def step():
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()

for _ in range(5):  # the first steps grow the heap, in both modes
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PATTERN, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt thresholds: glibc only")
def test_freed_activations_are_reused_without_page_faults():
    default, keep = faults("default"), faults("keep")
    if not keep["kept"]:
        pytest.skip("not glibc")
    first_stage = 64 * 16 * 28 * 28 * 4 // 4096  # pages of one first-stage activation
    assert default["faults"] > 5 * first_stage  # glibc's thresholds: faulted in again each step
    assert keep["faults"] < default["faults"] / 5 and keep["faults"] < 5 * first_stage


def test_keep_freed_memory_is_idempotent():
    assert keep_freed_memory() == keep_freed_memory()
