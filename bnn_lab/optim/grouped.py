"""Several optimizers acting as one, each over its own parameter groups.

Lightning, the checkpoint format, resume and DDP see one ordinary ``torch.optim.Optimizer``:
its ``param_groups`` are the parts' groups in order (the same dict objects, so an LR
scheduler's changes reach the parts), and its ``state`` is one table that the parts share
(their parameters are disjoint), so ``state_dict`` / ``load_state_dict`` are the base
class's and a checkpoint looks like one of a single optimizer. ``step`` evaluates the closure
once and then steps every part.
"""

from __future__ import annotations

import torch


class GroupedOptimizer(torch.optim.Optimizer):
    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:
        self.parts = list(parts)
        super().__init__([g for part in self.parts for g in part.param_groups], defaults={})
        self._share()

    def _share(self) -> None:
        start = 0
        for part in self.parts:
            n = len(part.param_groups)
            part.param_groups = self.param_groups[start : start + n]
            part.state = self.state
            start += n

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts:
            part.step()
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # new group dicts and a new state table
        self._share()

    def __repr__(self) -> str:
        return f"GroupedOptimizer({', '.join(type(p).__name__ for p in self.parts)})"
