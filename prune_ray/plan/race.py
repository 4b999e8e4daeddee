"""The `race` schedule: the searched allocation as a race over hundreds of proposals, where the
search spends fine-tuning only on the proposals that keep earning it.

1. Portfolio: the one-shot allocations of `search.portfolio` (default lamp, global, knapsack) at
   the budget; a prior that cannot serve the method is left out.
2. Proposals: each prior, and `search.proposals` in all, the others drawn quasi-randomly (a
   scrambled Sobol sequence) around the priors in turn: layer i keeps the prior's fraction x
   exp(theta_i), theta_i in [-search.log_range, search.log_range], projected onto the budget
   (plan.densities), so every proposal meets it as exactly as the priors.
3. Round 0 scores every proposal by the proxy alone (plan.proxy: forward passes, no fine-tuning).
4. Successive halving: round k fine-tunes the best `search.race_keep[k-1]` of the previous round
   (by proxy, then by validation top-1) for `search.race_epochs[k-1]` epochs, each from the
   baseline (for example 16 at 1 epoch, then 4 at 3).
5. Final round: the last round's best `race_keep[-1]` and every prior of the portfolio, each
   fine-tuned for the full finetune.epochs; the best validation top-1 is the trial's model. So the
   race can lose to the best prior only by the noise of that selection.

Each proposal and round is a trace row (`<sweep>/race/<trial_id>.parquet`: both proxies, the
prior it was drawn around, its top-1 per round), and the trial's row says the fine-tuning epochs
the race spent besides the winner's own (`search_epochs`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from ..prune import Calibration
from . import Adapted, Proposal, Schedule, Subject, get_schedule, one_shot_allocations, register_schedule
from .budget import BudgetUnreachableError
from .densities import densities_of, project_densities

if TYPE_CHECKING:
    from ..spec_types import SweepSpec
    from .netadapt import ShortTune
    from ..train import TrainRecipe


@dataclass(frozen=True)
class PlanCandidate:
    """A whole plan to prune from the baseline and fine-tune (netadapt's candidates prune one layer)."""

    removed: dict[str, int]

    @property
    def counts(self) -> dict[str, int]:
        return self.removed


@dataclass
class Entry:
    """One proposal in the race."""

    index: int
    prior: str  # the portfolio allocation it was drawn around (or is, when `is_prior`)
    is_prior: bool
    removed: dict[str, int]
    resource_keep: float
    proxies: dict[str, float]  # both proxies (plan.proxy.MEASURED)
    top1: float | None = None  # validation top-1 after the latest round it entered


def portfolio_plans(subject: Subject, budget: float, spec: SweepSpec) -> dict[str, dict[str, int]]:
    """Each prior of search.portfolio that can serve the subject's method: its plan at the budget."""
    plans = {}
    for name in spec.search.portfolio:
        entry = get_schedule(name)
        try:
            entry.check(spec, subject)
            plans[name] = entry.plan(subject, budget, Proposal(), spec.search)
        except ValueError:  # erk and channels, say: the prior has nothing to offer this method
            continue
    if not plans:
        raise ValueError(f"schedule 'race': no prior of search.portfolio {list(spec.search.portfolio)} serves method "
                         f"{subject.method.name!r}")
    return plans


def draw_proposals(subject: Subject, budget: float, spec: SweepSpec, priors: dict[str, dict[str, int]],
                   seed: int) -> list[tuple[str, bool, dict[str, int]]]:
    """(prior, is_prior, plan): the priors, then quasi-random draws around them in turn, distinct plans."""
    layers, floor = subject.layers, 1 - subject.method.max_ratio
    found = [(name, True, removed) for name, removed in priors.items()]
    seen = {tuple(sorted(removed.items())) for _, _, removed in found}
    wanted = spec.search.proposals - len(found)
    if wanted <= 0:
        return found
    resource_of = subject.resource_fn()
    sobol = torch.quasirandom.SobolEngine(dimension=len(layers), scramble=True, seed=seed)
    names = list(priors)
    bases = {name: {k: max(v, floor) for k, v in densities_of(layers, priors[name]).items()} for name in names}
    draw = 0
    for u in sobol.draw(4 * wanted).tolist():  # duplicates are skipped: a few spare draws
        if len(found) - len(priors) >= wanted:
            break
        name = names[draw % len(names)]
        draw += 1
        thetas = [(2 * value - 1) * spec.search.log_range for value in u]
        densities = {layer.name: bases[name][layer.name] * math.exp(theta) for layer, theta in zip(layers, thetas)}
        try:
            removed = project_densities(layers, densities, resource_of, budget * subject.baseline_resource,
                                        max_ratio=subject.method.max_ratio, round_to=subject.round_to).removed
        except BudgetUnreachableError:
            continue
        key = tuple(sorted(removed.items()))
        if key not in seen:
            seen.add(key)
            found.append((name, False, removed))
    return found


def trace_row(entry: Entry, round_: int, epochs: int) -> dict:
    return {"proposal": entry.index, "prior": entry.prior, "is_prior": entry.is_prior, "round": round_,
            "epochs": epochs, "proxy_kl": entry.proxies["kl"], "proxy_loss": entry.proxies["bn_loss"],
            "resource_keep": entry.resource_keep, "top1": entry.top1 if round_ else None}


def run_race(subject: Subject, budget: float, spec: SweepSpec, short_tunes: Callable[[TrainRecipe], ShortTune],
             seed: int) -> Adapted:
    """Steps 1-5 of the module docstring; the winner comes back fine-tuned (Adapted.finetuned)."""
    scorer, options = subject.scorer, spec.search
    if scorer is None:
        raise ValueError("schedule 'race' scores proposals by a proxy on the trial's data: the subject has no scorer")
    priors = portfolio_plans(subject, budget, spec)
    resource_of = subject.resource_fn()
    calibration = Calibration(scorer.recalibration[:64])
    entries = []
    for index, (prior, is_prior, removed) in enumerate(draw_proposals(subject, budget, spec, priors, seed)):
        pruned = subject.method.prune(copy.deepcopy(subject.model), removed, calibration)
        entries.append(Entry(index, prior, is_prior, removed, resource_of(removed) / subject.baseline_resource,
                             scorer.scores(pruned)))
    trace = [trace_row(entry, 0, 0) for entry in entries]
    # candidates have new shapes: under compile auto their short fine-tunes run eager (as netadapt's)
    compile = "off" if spec.finetune.compile == "auto" else spec.finetune.compile
    short = dataclasses.replace(spec.finetune, warmup_epochs=0, compile=compile)
    ranked = sorted(entries, key=lambda entry: entry.proxies[scorer.proxy])
    spent = 0
    for round_, (keep, epochs) in enumerate(zip(options.race_keep[:-1], options.race_epochs), start=1):
        ranked = _fine_tune(ranked[:keep], subject, short_tunes(dataclasses.replace(short, epochs=epochs)))[0]
        trace += [trace_row(entry, round_, epochs) for entry in ranked]
        spent += len(ranked) * epochs  # fewer than `keep` when fewer distinct proposals exist
    final = ranked[:options.race_keep[-1]]
    final += [entry for entry in entries if entry.is_prior and entry.index not in {e.index for e in final}]
    full = dataclasses.replace(spec.finetune, compile=compile)
    final, models = _fine_tune(final, subject, short_tunes(full))
    trace += [trace_row(entry, len(options.race_keep), full.epochs) for entry in final]
    spent += (len(final) - 1) * full.epochs  # the winner's own epochs are the trial's finetune_epochs
    winner = final[0]
    return Adapted(models[winner.index](), winner.removed, trace, finetuned=True, search_epochs=spent)


def _fine_tune(entries: list[Entry], subject: Subject, short_tune: ShortTune) -> tuple[list[Entry], dict]:
    """The entries fine-tuned (their top1 set), best first (ties: the lower resource kept), and a
    fetcher of each one's fine-tuned model by proposal index."""
    outcomes = short_tune(subject.model, [PlanCandidate(entry.removed) for entry in entries])
    for entry, outcome in zip(entries, outcomes):
        entry.top1 = outcome.top1
    fetchers = {entry.index: outcome.fetch for entry, outcome in zip(entries, outcomes)}
    order = sorted(entries, key=lambda entry: (-entry.top1, entry.resource_keep))
    return order, fetchers


def _adapt(subject: Subject, budget: float, spec: SweepSpec, short_tunes) -> Adapted:
    seed = int(torch.randint(0, 2**31 - 1, ()))  # the trial seeds torch with its point's seed
    return run_race(subject, budget, spec, short_tunes, seed)


def _validate(spec: SweepSpec) -> None:
    options = spec.search
    keep, epochs = tuple(options.race_keep), tuple(options.race_epochs)
    if not keep or any(k < 1 for k in keep) or any(a <= b for a, b in zip(keep, keep[1:])):
        raise ValueError(f"search.race_keep: {list(keep)} must be decreasing positive counts, e.g. [16, 4, 1]")
    if len(epochs) != len(keep) - 1 or any(e < 1 for e in epochs):
        raise ValueError(f"search.race_epochs: {list(epochs)} needs one positive epoch count per round before the "
                         f"final one ({len(keep) - 1} for race_keep {list(keep)})")
    if options.proposals < keep[0]:
        raise ValueError(f"search.proposals: {options.proposals} is fewer than race_keep's first round ({keep[0]})")
    allowed = one_shot_allocations()
    unknown = [name for name in options.portfolio if name not in allowed]
    if unknown or not options.portfolio:
        raise ValueError(f"search.portfolio: {list(options.portfolio)}; allowed: one or more of {', '.join(allowed)}")
    if spec.iterative != "oneshot" or options.two_stage:
        raise ValueError("schedule 'race' runs its own rounds: use iterative 'oneshot' and no screen_epochs/screen_bn")


register_schedule(Schedule(
    "race", "proxy-ranked proposals around a portfolio of one-shot allocations, raced by successive halving",
    "budget", adapt=_adapt, validate=_validate,
))
