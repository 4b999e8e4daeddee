"""The sweep spec's typed dataclasses: what a spec holds and its defaults, declared once. Reading
YAML into them and checking their values against the registries is `spec.py`'s; the plan
registry reads these types without importing that check (which consults the plan registry).
The built-in default sweep is `SweepSpec()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import DataOptions
from .quantize import BitWidths
from .train import TrainRecipe

# a model_args value: a YAML scalar or a list of scalars (lists arrive at the factory as tuples)
ModelArg = bool | int | float | str | None | tuple[bool | int | float | str, ...]


@dataclass(frozen=True)
class PlanOptions:
    """The options the schedules plan with (keys of the spec's `search` section)."""

    # schedule searched: the one-shot allocation searched around (auto: lamp for unstructured
    # methods, global for structured, uniform for low-rank), and each layer's log-multiplier range
    prior: str = "auto"
    log_range: float = 1.0  # theta_i in [-log_range, log_range]: kept fraction x e^theta_i
    min_shape_weight: float = 0.05  # schedule layer_type: lower bound of its two shape weights, in (0, 1]
    # how close a pruned copy stays to the baseline without fine-tuning (plan.proxy): bn_loss
    # (validation loss after BatchNorm recalibration), kl (KL divergence from the baseline's
    # outputs), auto (bn_loss with BatchNorm, else kl); ranks knapsack's curves and race's proposals
    proxy: str = "auto"
    # schedule knapsack (also in a race's portfolio): kept fractions per layer on each sensitivity
    # curve, each one a pruned copy of the baseline scored by the proxy (more: finer choices, slower)
    curve_points: int = 12
    # schedule race: the one-shot allocations it starts from (each also enters its final round)
    portfolio: tuple[str, ...] = ("lamp", "global", "knapsack")
    proposals: int = 128  # schedule race: proposals per operating point, scored by the proxy alone
    # schedule race: proposals kept per round (the last: how many race the priors in the final round)
    race_keep: tuple[int, ...] = (8, 2, 1)
    race_epochs: tuple[int, ...] = (1, 2)  # schedule race: fine-tuning epochs of each round before the final one


@dataclass(frozen=True)
class SearchOptions(PlanOptions):
    sampler: str = "tpe"  # Optuna sampler proposing the schedule's values
    num_samples: int = 4  # trials per operating point
    max_concurrent: int = 2  # trials running at once across the whole sweep
    # two-stage search: screen every proposal with this many fine-tuning epochs (0: one stage),
    # then fine-tune the best `finalists` of each operating point for finetune.epochs
    screen_epochs: int = 0
    # screen by accuracy after BatchNorm recalibration (EagleEye), with screen_epochs of fine-tuning
    # (0: none at all); two stages even with screen_epochs 0
    screen_bn: bool = False
    finalists: int = 2  # two-stage search: screened proposals per operating point fine-tuned fully (was keep_best)
    # frontier search (budgets: []): the kept fraction of the resource is searched too, in this range
    keep_range: tuple[float, ...] = (0.1, 0.9)
    # "asha": stop a trial whose accuracy after an epoch is in the bottom 2/3 of its operating
    # point's trials at that epoch (ASHA, reduction factor 3, rungs from grace_epochs)
    early_stopping: str = "none"
    grace_epochs: int = 1  # fine-tuning epochs every trial gets before ASHA may stop it

    @property
    def two_stage(self) -> bool:
        return self.screen_epochs > 0 or self.screen_bn

    @property
    def first_stage(self) -> str:
        """The stage of the searcher's trials: "screen" in a two-stage search, else "single"."""
        return "screen" if self.two_stage else "single"


@dataclass(frozen=True)
class NetAdaptOptions:
    """schedule 'netadapt' (Yang et al. 2018): greedy steps, each removing step_fraction of the
    baseline's resource from the one layer whose candidate does best after a short fine-tune."""

    step_fraction: float = 0.1  # resource removed per step, as a fraction of the baseline's, in (0, 1)
    short_epochs: int = 1  # fine-tuning epochs of each candidate (0: rank them right after pruning)
    parallel: int = 4  # candidates fine-tuned at once, as Ray tasks beside the trial


@dataclass(frozen=True)
class BaselineOptions:
    train: TrainRecipe = TrainRecipe(epochs=10)  # recipe of the baseline (part of its store key)
    checkpoint: str | None = None  # load this file instead of the store (.safetensors or .pt)
    retrain_corrupt: bool = False  # retrain a corrupt stored baseline instead of failing


@dataclass(frozen=True)
class ArtifactOptions:
    save: str = "best"  # one of spec.SAVE_POLICIES: pruned models kept under <sweep>/models/<trial_id>/


@dataclass(frozen=True)
class PruneOptions:
    # structured methods: every layer keeps a multiple of this many channels, or all of them
    # (torch-pruning's round_to; 8 or 16 suit vectorised CPU kernels and tensor cores); 1: any count
    round_to: int = 1


@dataclass(frozen=True)
class MeasureOptions:
    """How latency is timed: the baseline and the pruned model in interleaved pairs of passes
    (prune_ray.measure.time_paired), each model's median reported."""

    latency_batch_size: int = 32  # examples per timed forward pass
    latency_repeats: int = 20  # timed passes of each model, at least
    latency_min_time_ms: float = 200.0  # and more passes until each model's add up to this (ms)
    latency_warmup: int = 3  # untimed passes of each model first


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0  # CPU cores per trial
    gpu: float = 0.0  # GPUs per trial; fractions pack several trials on one GPU


@dataclass(frozen=True)
class SweepSpec:
    name: str = "default"  # sweep name: results go to <storage>/<name>-<timestamp>/ unless --name
    # a zoo name, 'package.module:factory', 'path/to/net.py:factory', 'timm:<name>' or 'torchvision:<name>'
    model: str = "digits_cnn"
    model_args: dict[str, ModelArg] = field(default_factory=dict)  # keyword arguments of a non-zoo model's factory
    dataset: str = "digits"
    data: DataOptions = DataOptions()
    methods: tuple[str, ...] = ("magnitude", "l1_filter")
    # fraction of the baseline's resource kept, each in (0, 1]; [] with a multi-objective sampler:
    # search accuracy against resource kept (search.keep_range) and report the non-dominated set
    budgets: tuple[float, ...] = (0.5,)
    budget_metric: str = "auto"
    schedule: str = "searched"
    # schedule "fixed": operating points given as ratios instead of budgets, each one float (every
    # layer) or a mapping of layer names (or "conv"/"fc" for the method conv_fc) to ratios
    fixed_ratios: tuple[float | dict[str, float], ...] = ()
    iterative: str = "oneshot"  # oneshot, cycles (prune/retrain, Han et al.) or agp (Zhu & Gupta)
    prune_steps: tuple[int, ...] = (1,)  # pruning steps of cycles/agp; each value is its own group
    search: SearchOptions = SearchOptions()
    netadapt: NetAdaptOptions = NetAdaptOptions()
    baseline: BaselineOptions = BaselineOptions()
    finetune: TrainRecipe = TrainRecipe(epochs=3, lr=0.01)
    prune: PruneOptions = PruneOptions()
    measure: MeasureOptions = MeasureOptions()
    artifacts: ArtifactOptions = ArtifactOptions()
    resources: Resources = Resources()
    # replicates: every operating point runs once per seed (its own baseline, fine-tuning and
    # Optuna study), so the analysis reports a mean and spread per point
    seeds: tuple[int, ...] = (0,)
    # quantisers applied after fine-tuning (Deep Compression's second stage): none, int8, kmeans,
    # binary; each one (and each quantize_bits entry of kmeans) is its own operating point
    quantize: tuple[str, ...] = ("none",)
    quantize_bits: tuple[BitWidths, ...] = (BitWidths(),)  # kmeans: bits per conv and per fc weight code, 1..16
    quantize_epochs: int = 1  # epochs fine-tuning the quantised model (centroids, binary latent weights); 0: none
    quantize_lr: float = 0.001  # their SGD learning rate (a centroid's gradient is its cluster's sum)
    storage: str = "./results"  # local path or URI (s3://, gs://) of the results root
    max_failures: int = 1  # retries of a trial whose worker or node died
