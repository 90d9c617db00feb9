"""Stop rules of the :class:`~torch_pet.training.Trainer`: when a run ends.

A rule is asked before every epoch (:meth:`StopRule.done`) and before every optimizer step
(:meth:`StopRule.stop_step`), and says how much of the run is done (:meth:`StopRule.fraction`,
in [0, 1], which drives the cosine learning-rate schedule). :class:`MaxEpochs` ends after a
number of epochs; :class:`TimeBudget` at the first step that would start after a number of
wall-clock or process-CPU seconds (counted from :meth:`StopRule.start`, called by
``Trainer.fit``); :class:`FirstOf` combines rules. Any object with these four methods works.
"""
import time
from typing import Sequence

import torch

from torch_pet.training.config import CLOCKS, TrainingConfig

__all__ = ["StopRule", "MaxEpochs", "TimeBudget", "FirstOf", "stop_rule"]


class StopRule:
    """Base class: never stops; subclasses override what they need."""

    def start(self, trainer) -> None:
        """Called when ``trainer.fit()`` begins."""

    def done(self, trainer) -> bool:
        """Checked before every epoch."""
        return False

    def stop_step(self, trainer) -> bool:
        """Checked before every optimizer step; True ends the epoch and the run."""
        return False

    def fraction(self, trainer) -> float:
        """Part of the run done, in [0, 1]."""
        return 0.0


class MaxEpochs(StopRule):
    """Stop after ``epochs`` epochs (``trainer.epoch`` counts the finished ones)."""

    def __init__(self, epochs: int):
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"MaxEpochs: epochs must be an integer >= 1, got {epochs!r}")
        self.epochs = epochs

    def done(self, trainer) -> bool:
        return trainer.epoch >= self.epochs

    def fraction(self, trainer) -> float:
        return min(1.0, trainer.step / (self.epochs * trainer.steps_per_epoch))

    def __repr__(self) -> str:
        return f"MaxEpochs({self.epochs})"


class TimeBudget(StopRule):
    """Stop at the first step that would start after ``seconds`` of ``clock`` ("wall" or
    "cpu": the process CPU time, fairer on a shared machine). CUDA work is synchronised
    before each reading."""

    def __init__(self, seconds: float, clock: str = "wall"):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not 0 < seconds < float("inf"):
            raise ValueError(f"TimeBudget: seconds must be positive and finite, got {seconds!r}")
        if clock not in CLOCKS:
            raise ValueError(f"TimeBudget: clock must be one of {CLOCKS}, got {clock!r}")
        self.seconds, self.clock = float(seconds), clock
        self._wall0 = self._cpu0 = None

    def start(self, trainer) -> None:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def elapsed(self, trainer=None) -> dict:
        """``{"wall_s", "cpu_s"}`` since :meth:`start` (zeros before it)."""
        if self._wall0 is None:
            return {"wall_s": 0.0, "cpu_s": 0.0}
        device = getattr(trainer, "device", None)
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        return {"wall_s": time.perf_counter() - self._wall0,
                "cpu_s": time.process_time() - self._cpu0}

    def spent(self, trainer=None) -> float:
        return self.elapsed(trainer)[f"{self.clock}_s"]

    def done(self, trainer) -> bool:
        return self._wall0 is not None and self.spent(trainer) >= self.seconds

    stop_step = done

    def fraction(self, trainer) -> float:
        return min(1.0, self.spent(trainer) / self.seconds)

    def __repr__(self) -> str:
        return f"TimeBudget({self.seconds:g}, clock={self.clock!r})"


class FirstOf(StopRule):
    """Stop as soon as one of ``rules`` does; the fraction is the largest of theirs."""

    def __init__(self, rules: Sequence[StopRule]):
        self.rules = list(rules)
        if not self.rules:
            raise ValueError("FirstOf: give at least one stop rule")

    def start(self, trainer) -> None:
        for rule in self.rules:
            rule.start(trainer)

    def done(self, trainer) -> bool:
        return any(rule.done(trainer) for rule in self.rules)

    def stop_step(self, trainer) -> bool:
        return any(rule.stop_step(trainer) for rule in self.rules)

    def fraction(self, trainer) -> float:
        return max(rule.fraction(trainer) for rule in self.rules)

    def __repr__(self) -> str:
        return f"FirstOf({self.rules!r})"


def stop_rule(config: TrainingConfig) -> StopRule:
    """The rule a config asks for: ``MaxEpochs(epochs)``, and with ``budget_s`` also a
    :class:`TimeBudget` (whichever ends first)."""
    epochs = MaxEpochs(config.epochs)
    if config.budget_s is None:
        return epochs
    return FirstOf([epochs, TimeBudget(config.budget_s, config.budget_clock)])
