"""Operating points, proposals and the one frozen trial config that crosses the Tune boundary.

Words as the README's glossary uses them:
- operating point: what trials are compared within (budget or fixed ratio(s), method, pruning
  steps, quantiser and its bits, seed); a search runs one Optuna study per operating point;
- proposal: what a search (or the sensitivity scan) proposes for one trial: one value per searched
  dimension and, in a frontier search, the kept fraction itself;
- stage: a pass of a two-stage search ("screen", then "final"); "single" when there is one pass.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from .plan import Proposal, get_schedule
from .quantize import BitWidths, get_quantizer

if TYPE_CHECKING:
    from .spec_types import SweepSpec

@dataclass(frozen=True)
class OperatingPoint:
    """Trials of one operating point are compared with each other, never across points."""

    budget: float | None  # kept fraction of the resource; None for fixed ratios and frontier searches
    method: str
    seed: int  # replicate RNG seed: its own baseline, fine-tuning and study
    ratio: float | Mapping[str, float] | None = None  # fixed schedule: the removed ratio(s)
    prune_steps: int = 1
    quantizer: str = "none"  # applied after fine-tuning (prune_ray.quantize registry)
    quantize_bits: BitWidths | None = None  # bits asked of a quantiser that takes them (kmeans); else None

    @property
    def quantize_label(self) -> str:
        """'kmeans8/5', 'int8', ...; '' for float32 weights (quantizer none)."""
        return get_quantizer(self.quantizer).label(self.quantize_bits)

    @property
    def frontier(self) -> bool:
        """No budget and no ratio: the search proposes the kept fraction itself."""
        return self.budget is None and self.ratio is None

    @property
    def study_name(self) -> str:
        point = f"ratio{json.dumps(self.ratio, sort_keys=True)}" if self.ratio is not None else (
            "frontier" if self.budget is None else f"budget{self.budget:g}")
        quantized = f"-{self.quantize_label.replace('/', '-')}" if self.quantize_label else ""
        return f"{self.method}-{point}-steps{self.prune_steps}{quantized}-seed{self.seed}"

    def as_dict(self) -> dict:
        return {"budget": self.budget, "method": self.method, "seed": self.seed,
                "ratio": dict(self.ratio) if isinstance(self.ratio, Mapping) else self.ratio,
                "prune_steps": self.prune_steps, "quantizer": self.quantizer,
                "quantize_bits": None if self.quantize_bits is None else dataclasses.asdict(self.quantize_bits)}


@dataclass(frozen=True)
class TrialConfig:
    """Everything that differs between trials of one sweep (the spec holds the rest)."""

    point: OperatingPoint
    proposal: Proposal = Proposal()
    stage: str = "single"  # "single", or "screen" / "final" of a two-stage search

    @property
    def target_keep(self) -> float | None:
        """The kept fraction the trial must meet: the budget, or a frontier search's proposal."""
        return self.point.budget if self.point.budget is not None else self.proposal.keep

    @property
    def group_key(self) -> str:
        """Operating point and stage as one string: trials with equal keys are compared."""
        return json.dumps([self.point.as_dict(), self.stage], sort_keys=True)

    def as_dict(self) -> dict:
        """Plain values (the trial's identity in config_hash, and Tune's logs)."""
        return {"point": self.point.as_dict(), "proposal": {"values": dict(self.proposal.values),
                "keep": self.proposal.keep}, "stage": self.stage}

    def in_stage(self, stage: str) -> TrialConfig:
        return TrialConfig(self.point, self.proposal, stage)


def quantize_variants(spec: SweepSpec) -> list[tuple[str, BitWidths | None]]:
    """(quantiser, bits asked) per quantize entry: one per quantize_bits entry for a quantiser that
    takes bits (kmeans), one for every other."""
    return [(name, bits) for name in spec.quantize
            for bits in (spec.quantize_bits if get_quantizer(name).takes_bits else (None,))]


def operating_points(spec: SweepSpec) -> list[OperatingPoint]:
    """One per (budget or fixed ratio) x method x prune_steps x quantiser variant x seed; a frontier
    search (no budgets) has one per method x prune_steps x quantiser variant x seed."""
    if get_schedule(spec.schedule).takes == "ratios":
        values = [(None, ratio) for ratio in spec.fixed_ratios]
    else:
        values = [(b, None) for b in spec.budgets] or [(None, None)]
    return [
        OperatingPoint(budget, method, seed, ratio, steps, quantizer, bits)
        for budget, ratio in values
        for method in spec.methods
        for steps in spec.prune_steps
        for quantizer, bits in quantize_variants(spec)
        for seed in spec.seeds
    ]
