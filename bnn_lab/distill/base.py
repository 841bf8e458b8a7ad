"""The base of every distillation preset: a teacher plus weighted loss terms.

A preset's weights become loss terms (bnn_lab/losses/): ``kd`` -> the ``kd`` term at
``temperature``, ``attention`` -> the ``attention`` term at ``layers``; a zero weight adds
no term. ``ce`` multiplies the run's cross-entropy weight (``loss.ce``).
"""

from __future__ import annotations

from typing import Any


class Distiller:
    needs_teacher = True

    def __init__(
        self,
        ce: float = 1.0,
        kd: float = 0.0,
        attention: float = 0.0,
        temperature: float = 1.0,
        layers: list[str] | None = None,
    ) -> None:
        self.weights = {"ce": float(ce), "kd": float(kd), "attention": float(attention)}
        self.temperature = float(temperature)
        self.layers = list(layers) if layers else None

    @property
    def needs_features(self) -> bool:
        return self.weights["attention"] > 0

    def term_specs(self) -> dict[str, dict[str, Any]]:
        """The loss terms this preset adds: ``{name: {weight, options}}``, kd before attention."""
        specs: dict[str, dict[str, Any]] = {}
        if self.weights["kd"] > 0:
            specs["kd"] = {"weight": self.weights["kd"], "temperature": self.temperature}
        if self.weights["attention"] > 0:
            specs["attention"] = {"weight": self.weights["attention"], "layers": self.layers}
        return specs
