"""Arms of a study: runs that differ only in ``seed`` form one arm; each arm's test accuracy
over seeds, its budget, and its paired difference with the baseline arm.

Runs are split first by ``study.name`` (the study presets set it; other runs form one
group), then into arms by their whole configuration without the seed and without the keys
that do not change the trained network (:data:`NOT_AN_ARM`). An arm is named by the
overrides its runs were started with, less the seed and less those every run shares
(``arm=fda_ste`` -> ``fda_ste``, ``estimator=mlp``), else by the configuration values that
differ between arms.

The budget that must be equal for a comparison is that of the judged network (the final
stage): data set, batch size, optimizer steps and epochs. A teacher and the earlier stages
of a progressive recipe are counted and shown apart; a comparison with unequal budgets is
refused.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..training.safety.run_dir import BOOKKEEPING_KEYS, under
from ..training.safety.run_dir import flatten as _flat
from .collect import Run, natural_key
from .stats import Estimate, estimate, paired_difference, verdict

# configuration keys that do not make another arm: the seed, bookkeeping, where the teacher is kept
NOT_AN_ARM = ("seed", *BOOKKEEPING_KEYS, "distill.teacher.cache", "distill.teacher.ckpt")
BUDGET_KEYS = ("data", "batch", "steps", "epochs")


def _ignored(key: str) -> bool:
    return under(key, NOT_AN_ARM)


def arm_config(run: Run) -> dict[str, Any]:
    """The flattened configuration that decides the arm (row fields when config.yaml is missing)."""
    if run.config:
        return {k: v for k, v in _flat(run.config).items() if not _ignored(k)}
    row = run.row()
    return {k: row[k] for k in ("estimator", "arch", "distill", "data", "precision")}


def budget(run: Run) -> dict[str, Any]:
    """What the judged (final-stage) network was trained with."""
    m, cfg = run.metrics, run.config
    stages = m.get("stages") or []
    batch = (cfg.get("data") or {}).get("batch_size")
    accumulate = (cfg.get("trainer") or {}).get("accumulate_grad_batches") or 1
    return {
        "data": m.get("data") or (cfg.get("data") or {}).get("name"),
        "batch": batch * accumulate if isinstance(batch, int) else None,
        "steps": m.get("global_steps"),
        "epochs": stages[-1].get("epochs") if stages else m.get("epochs"),
    }


def other_training(run: Run) -> dict[str, Any]:
    """Training spent on other networks: earlier stages of a recipe and the teacher."""
    m = run.metrics
    stages = m.get("stages") or []
    earlier = [s for s in stages[:-1]]
    teacher = m.get("teacher") or {}
    return {
        "stage_steps": sum(s.get("global_steps") or 0 for s in earlier) if earlier else 0,
        "stages": [f"{s['name']} {s.get('global_steps', '?')} steps" for s in earlier],
        "teacher_steps": teacher.get("global_steps") or 0,
    }


@dataclass
class Arm:
    label: str
    runs: list[Run]
    accs: dict[Any, float] = field(default_factory=dict)  # seed -> test/acc
    budgets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def estimate(self) -> Estimate | None:
        return estimate(self.accs.values()) if self.accs else None

    @property
    def tuning(self) -> dict[str, Any] | None:
        """What ``study.tune`` chose for this arm (its runs share one tuning), None where untuned."""
        return next((r.metrics["tuning"] for r in self.runs if r.metrics.get("tuning")), None)

    @property
    def budget(self) -> dict[str, Any] | None:
        """The arm's budget, None when its seeds were trained with different ones."""
        unique = {json.dumps(b, sort_keys=True) for b in self.budgets}
        return self.budgets[0] if len(unique) == 1 else None


@dataclass
class Comparison:
    arm: Arm
    diff: Estimate | None
    verdict: str
    note: str = ""


@dataclass
class Study:
    name: str | None
    arms: list[Arm]
    baseline: Arm
    comparisons: list[Comparison]
    notes: list[str] = field(default_factory=list)
    tuned: bool = False  # its arms were tuned first (study.tune): reported apart from the untuned runs

    def comparison(self, label: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.arm.label == label), None)

    def teachers(self) -> list[dict[str, Any]]:
        """Each distinct teacher once: its cost and how many runs of this study used it."""
        seen: dict[str, dict[str, Any]] = {}
        for arm in self.arms:
            for run in arm.runs:
                t = run.metrics.get("teacher")
                if not t:
                    continue
                entry = seen.setdefault(t.get("dir") or t.get("checkpoint"), {**t, "used_by": 0, "trained_by": []})
                entry["used_by"] += 1
                if t.get("trained_in_this_run"):
                    entry["trained_by"].append(run.name)
        return list(seen.values())


def _arm_override(override: str) -> bool:
    """False for the command-line overrides that make no arm: Hydra's own, the seed, bookkeeping
    (``resume=true``, ``checkpoint.*``, ``study.*``...), so that parts of one grid started with
    different bookkeeping still form the same arms."""
    key = override.lstrip("+~").split("=", 1)[0]
    return not key.startswith("hydra.") and not _ignored(key)


def _override_labels(groups: list[list[Run]]) -> list[str] | None:
    if any(r.overrides is None for g in groups for r in g):
        return None
    per_group = [{o for o in g[0].overrides if _arm_override(o)} for g in groups]
    common = set.intersection(*per_group) if per_group else set()
    labels = [" ".join(o.removeprefix("arm=") for o in sorted(s - common)) for s in per_group]
    return labels if all(labels) and len(set(labels)) == len(labels) else None


def _config_labels(configs: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for c in configs for k in c})
    differ = [k for k in keys if len({json.dumps(c.get(k), default=str) for c in configs}) > 1]
    renamed = {k.rsplit(".", 1)[0] for k in differ if k.endswith(".name")}  # a group option changed
    shown = [k for k in differ if k.endswith(".name") or k.split(".")[0] not in renamed]
    labels = []
    for c in configs:
        parts = [f"{k.removesuffix('.name')}={c.get(k)}" for k in shown[:4] if k in c]
        labels.append(", ".join(parts) + (", ..." if len(shown) > 4 else "") or "all runs")
    return labels


def _label_arms(groups: list[list[Run]], configs: list[dict[str, Any]]) -> list[str]:
    if len(groups) == 1:
        return _override_labels(groups) or ["all runs"]
    labels = _override_labels(groups) or _config_labels(configs)
    if len(set(labels)) < len(labels):
        labels = [f"{label} #{i}" for i, label in enumerate(labels)]
    return labels


def _choose_baseline(arms: list[Arm], wanted: str | None, name: str | None, notes: list[str]) -> Arm:
    """The arm named ``wanted`` (``--baseline``), else the one the runs' preset names
    (``study.baseline``), else the first. A preset's baseline without a finished run yet (a study
    still running) gives the first arm, said in ``notes``; a ``--baseline`` that names no arm fails."""
    preset = None
    if wanted is None and len(arms) == 1:
        return arms[0]
    if wanted is None:
        named = {(r.config.get("study") or {}).get("baseline") for a in arms for r in a.runs} - {None}
        if len(named) == 1:
            preset = str(named.pop())
    for arm in arms:
        if any(w in (arm.label, f"arm={arm.label}") or arm.label.removeprefix("arm=") == w for w in (wanted, preset)):
            return arm
    if wanted is None:
        if preset is not None:
            notes.append(f"the preset's baseline {preset} has no tested run yet: compared with {arms[0].label}")
        return arms[0]
    raise UserError(
        f"baseline {wanted!r} is no arm of {'study ' + name if name else 'these runs'}; "
        f"arms: {', '.join(a.label for a in arms)}"
    )


def _budget_note(arm: Arm, base: Arm) -> str:
    if arm.budget is None:
        return "refused: the seeds of this arm had different budgets"
    if base.budget is None:
        return "refused: the seeds of the baseline had different budgets"
    differ = [f"{k} {arm.budget[k]} vs {base.budget[k]}" for k in BUDGET_KEYS if arm.budget[k] != base.budget[k]]
    return f"refused: unequal budget ({', '.join(differ)})" if differ else ""


def build_study(name: str | None, runs: list[Run], baseline: str | None = None) -> Study:
    by_config: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_config[json.dumps(arm_config(run), sort_keys=True, default=str)].append(run)
    groups = sorted(by_config.values(), key=lambda g: min(natural_key(r.name) for r in g))
    labels = _label_arms(groups, [arm_config(g[0]) for g in groups])
    arms, notes = [], []
    for label, group in zip(labels, groups):
        arm = Arm(label, group)
        for run in group:
            acc = run.row()["test_acc"]
            seed = run.row()["seed"]
            if acc is None:
                notes.append(f"{run.name}: no test/acc, left out of arm {label}")
                continue
            if seed in arm.accs:
                notes.append(f"arm {label}: two runs with seed {seed}; {run.name} is left out")
                continue
            arm.accs[seed] = acc
            arm.budgets.append(budget(run))
        arms.append(arm)
    arms = [a for a in arms if a.accs]
    if not arms:
        raise UserError("no run with a test/acc")
    base = _choose_baseline(arms, baseline, name, notes)
    comparisons = []
    for arm in arms:
        if arm is base:
            continue
        refused = _budget_note(arm, base)
        diff = None if refused else paired_difference(arm.accs, base.accs)
        if refused:
            comparisons.append(Comparison(arm, None, "", refused))
        elif diff is None:
            comparisons.append(Comparison(arm, None, "", "no seed in common with the baseline"))
        else:
            missing = sorted(set(arm.accs) ^ set(base.accs), key=str)
            note = f"seeds {', '.join(map(str, missing))} not in both arms: left out" if missing else ""
            comparisons.append(Comparison(arm, diff, verdict(diff), note))
    return Study(name, arms, base, comparisons, notes)


def build_studies(runs: list[Run], baseline: str | None = None) -> list[Study]:
    """One :class:`Study` per ``study.name`` (runs without one form one more), and one more per
    name for the runs whose arms were tuned first (``study.tune``), so that a tuned study's
    verdicts stand beside the untuned ones; ``baseline`` applies to every study that has an arm
    of that name (and must match at least one)."""
    by_name: dict[tuple[str | None, bool], list[Run]] = defaultdict(list)
    for run in runs:
        by_name[((run.config.get("study") or {}).get("name"), bool(run.metrics.get("tuning")))].append(run)
    studies, refusal = [], None
    for (name, tuned), members in sorted(by_name.items(), key=lambda kv: (str(kv[0][0] or ""), kv[0][1])):
        try:
            studies.append(build_study(name, members, baseline))
        except UserError as exc:
            if baseline is None or len(by_name) == 1 or "is no arm" not in str(exc):
                raise
            refusal = exc
            studies.append(build_study(name, members, None))
        studies[-1].tuned = tuned
    if refusal is not None and all(s.baseline.label != baseline for s in studies):
        raise refusal
    return studies
