"""Deterministic variant selection for experiments."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from inferpipe.core.errors import ConfigurationError


def unit_hash(*parts: str) -> float:
    """A stable number in [0, 1) from strings (the same on every machine and replay)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class Fixed:
    """Always the same variant."""

    variant: str

    def choose(self, experiment: str, run_id: str, variants: list[str]) -> str:
        _check(self.variant, variants)
        return self.variant


@dataclass(frozen=True, slots=True)
class Weighted:
    """A variant per run, in proportion to weights, by a hash of the run id."""

    weights: dict[str, float]

    def choose(self, experiment: str, run_id: str, variants: list[str]) -> str:
        return _pick(self.weights, variants, unit_hash(experiment, run_id))


@dataclass(frozen=True, slots=True)
class Bucket:
    """A variant per value (a user id, say): the same value always gets the same variant."""

    value: Any
    weights: dict[str, float] | None = None

    def choose(self, experiment: str, run_id: str, variants: list[str]) -> str:
        weights = self.weights or dict.fromkeys(variants, 1.0)
        return _pick(weights, variants, unit_hash(experiment, str(self.value)))


Selector = Fixed | Weighted | Bucket


def fixed(variant: str) -> Fixed:
    return Fixed(variant)


def weighted(weights: dict[str, float]) -> Weighted:
    return Weighted(weights)


def bucket(value: Any, weights: dict[str, float] | None = None) -> Bucket:
    return Bucket(value, weights)


def _check(variant: str, variants: list[str]) -> None:
    if variant not in variants:
        raise ConfigurationError(f"unknown variant {variant!r} (variants: {', '.join(variants)})")


def _pick(weights: dict[str, float], variants: list[str], point: float) -> str:
    for name in weights:
        _check(name, variants)
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ConfigurationError("experiment weights must be >= 0 with a positive total")
    total = sum(weights.values())
    edge = 0.0
    for name in sorted(weights):
        edge += weights[name] / total
        if point < edge:
            return name
    return sorted(weights)[-1]
