"""Search spaces of hyperparameter sweeps: distributions, quantisation and transforms.

A sweep file's ``space`` maps a dotted key of a stage config (``train.lr``, ``train.betas.1``,
``model.attention_dropout``) to a distribution::

    train.lr:        {type: loguniform, low: 1.0e-4, high: 1.0e-2}
    train.betas.1:   {type: loguniform, low: 1.0e-3, high: 0.1, transform: one_minus}
    train.eps:       {type: lognormal, mu: -18.4, sigma: 1.0}
    train.warmup_steps: {type: quniform, low: 0, high: 1200, q: 100}
    train.schedule:  {type: categorical, choices: [cosine, linear]}

Types: ``uniform`` and ``loguniform`` (``low``, ``high``); ``normal`` (``mu``, ``sigma``) and
``lognormal`` (``mu``, ``sigma`` of the logarithm), both optionally truncated to ``low`` /
``high``; the quantised ``quniform``, ``qloguniform``, ``qnormal``, ``qlognormal`` (the same plus
a step ``q``: values lie on the grid ``low + k * q``, or ``k * q`` without ``low``; a grid with
integer ``q`` and anchor gives integers); and ``categorical`` (``choices``). ``transform``
maps the sampled value to the config value: ``one_minus`` samples ``1 - x`` (the paper's way
of searching Adam's betas close to 1).

Optuna has no normal distribution, so a (truncated) normal is searched through its quantile:
Optuna sees a uniform parameter ``u`` in ``(Phi(a), Phi(b))`` and the value is
``mu + sigma * Phi^-1(u)``. TPE's random start-up trials then draw from the normal prior and its
later suggestions stay inside the truncation bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from .errors import UserError

DISTRIBUTIONS = ("uniform", "loguniform", "normal", "lognormal", "quniform", "qloguniform", "qnormal",
                 "qlognormal", "categorical")
TRANSFORMS = ("none", "one_minus")

#: Quantiles kept away from 0 and 1: an untruncated normal is searched within about 4.75 sigma.
_TAIL = 1e-6

_REQUIRED = {"uniform": ("low", "high"), "loguniform": ("low", "high"), "normal": ("mu", "sigma"),
             "lognormal": ("mu", "sigma"), "categorical": ("choices",)}
_OPTIONAL = {"uniform": (), "loguniform": (), "normal": ("low", "high"), "lognormal": ("low", "high"),
             "categorical": ()}


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: ``key`` in the stage config, its distribution and transform."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    mu: float | None = None
    sigma: float | None = None
    q: float | None = None
    choices: tuple = ()
    transform: str = "none"

    @property
    def base(self) -> str:
        """The distribution without quantisation (``qlognormal`` -> ``lognormal``)."""
        return self.type[1:] if self.type.startswith("q") else self.type

    @property
    def is_log(self) -> bool:
        return self.base in ("loguniform", "lognormal")

    @property
    def label(self) -> str:
        """The name of the searched quantity (``1-train.betas.1`` for a ``one_minus`` transform)."""
        return f"1-{self.key}" if self.transform == "one_minus" else self.key

    def to_config(self, searched: Any) -> Any:
        """The config value for a searched value (after the transform)."""
        if self.transform == "one_minus":
            return _clean(1 - searched)
        return searched

    def representatives(self) -> list[Any]:
        """Config values that every valid sample resembles: the bounds, the centre or each choice.

        Used to check, before any trial runs, that the stage config accepts the parameter.
        """
        if self.type == "categorical":
            return list(self.choices)
        if self.base in ("uniform", "loguniform"):
            points = [self.low, self.high]
        else:
            centre = math.exp(self.mu) if self.base == "lognormal" else self.mu
            points = [p for p in (self.low, self.high) if p is not None] or [centre]
        return [self.to_config(self._quantise(p)) for p in points]

    # ---- sampling

    def sample(self, trial) -> tuple[Any, Any]:
        """Draw from ``trial`` (an Optuna trial); return ``(searched value, config value)``."""
        if self.type == "categorical":
            value = trial.suggest_categorical(self.key, list(self.choices))
            return value, self.to_config(value)
        if self.base == "uniform":
            if self.q is None:
                x = trial.suggest_float(self.key, self.low, self.high)
            elif self._integer_grid():
                x = trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.q))
            else:
                x = _clean(trial.suggest_float(self.key, self.low, self.high, step=self.q))
            return x, self.to_config(x)
        if self.base == "loguniform":
            x = trial.suggest_float(self.key, self.low, self.high, log=True)
        else:
            lo, hi = self._quantile_range()
            u = trial.suggest_float(self.key, lo, hi)
            z = NormalDist(self.mu, self.sigma).inv_cdf(u)
            x = math.exp(z) if self.base == "lognormal" else z
            x = min(max(x, self.low if self.low is not None else -math.inf),
                    self.high if self.high is not None else math.inf)
        x = self._quantise(x)
        return x, self.to_config(x)

    def _integer_grid(self) -> bool:
        anchor = self.low if self.low is not None else 0
        return self.q is not None and float(self.q).is_integer() and float(anchor).is_integer()

    def _quantise(self, x: float) -> Any:
        """Round ``x`` to the grid ``anchor + k * q`` inside the bounds (identity without ``q``)."""
        if self.q is None:
            return _clean(x)
        anchor = self.low if self.low is not None else 0.0
        v = anchor + round((x - anchor) / self.q) * self.q
        if self.high is not None and v > self.high + 1e-12 * max(1.0, abs(self.high)):
            v -= self.q
        if self.low is not None and v < self.low:
            v += self.q
        return int(round(v)) if self._integer_grid() else _clean(v)

    def _quantile_range(self) -> tuple[float, float]:
        """``(Phi(a), Phi(b))`` of the truncation bounds, in the normal's own (log) space."""
        normal = NormalDist(self.mu, self.sigma)
        to_space = math.log if self.base == "lognormal" else (lambda v: v)
        lo = normal.cdf(to_space(self.low)) if self.low is not None else 0.0
        hi = normal.cdf(to_space(self.high)) if self.high is not None else 1.0
        return max(lo, _TAIL), min(hi, 1 - _TAIL)


def _clean(value: float) -> float:
    """Drop float noise such as ``0.30000000000000004`` so configs read as written."""
    return float(f"{value:.12g}")


def _number(spec: dict, name: str, where: str) -> float | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}.{name}: expected a finite number, got {spec.get(name)!r}")
    return value


def parse_param(key: str, spec: Any, where: str) -> Param:
    """Validate one entry of ``space`` (``where`` names it in errors) and return its :class:`Param`."""
    if not isinstance(spec, dict):
        raise UserError(f"{where}: expected a mapping such as {{type: loguniform, low: 1e-4, high: 1e-2}}, "
                        f"got {spec!r}")
    kind = spec.get("type")
    if kind not in DISTRIBUTIONS:
        raise UserError(f"{where}.type: got {kind!r}, expected one of {', '.join(DISTRIBUTIONS)}")
    base = kind[1:] if kind.startswith("q") else kind
    allowed = {"type", "transform", *_REQUIRED[base], *_OPTIONAL[base], *(("q",) if kind != base else ())}
    for name in spec:
        if name not in allowed:
            raise UserError(f"{where}: unknown key {name!r} for {kind}; expected {', '.join(sorted(allowed))}")
    for name in _REQUIRED[base] + (("q",) if kind != base else ()):
        if spec.get(name) is None:
            raise UserError(f"{where}.{name}: missing (required for {kind})")
    transform = spec.get("transform", "none")
    if transform not in TRANSFORMS:
        raise UserError(f"{where}.transform: got {transform!r}, expected one of {', '.join(TRANSFORMS)}")
    if kind == "categorical":
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}.choices: expected a non-empty list, got {choices!r}")
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise UserError(f"{where}.choices: {choice!r} is not a number, string, boolean or null")
        if transform != "none" and not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
            raise UserError(f"{where}.transform: {transform} needs numeric choices")
        return Param(key=key, type=kind, choices=tuple(choices), transform=transform)
    low, high, mu, sigma, q = (_number(spec, n, where) for n in ("low", "high", "mu", "sigma", "q"))
    if low is not None and high is not None and not low < high:
        raise UserError(f"{where}: low ({low}) must be below high ({high})")
    if base in ("loguniform", "lognormal") and low is not None and low <= 0:
        raise UserError(f"{where}.low: got {low}, expected > 0 for {kind}")
    if base in ("lognormal",) and high is not None and high <= 0:
        raise UserError(f"{where}.high: got {high}, expected > 0 for {kind}")
    if sigma is not None and sigma <= 0:
        raise UserError(f"{where}.sigma: got {sigma}, expected > 0")
    if q is not None and q <= 0:
        raise UserError(f"{where}.q: got {q}, expected > 0")
    param = Param(key=key, type=kind, low=low, high=high, mu=mu, sigma=sigma, q=q, transform=transform)
    if kind == "quniform":
        steps = (high - low) / q
        if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
            raise UserError(f"{where}: high - low ({high - low:g}) must be a multiple of q ({q:g})")
    if base in ("normal", "lognormal"):
        lo, hi = param._quantile_range()
        if not lo < hi:
            raise UserError(f"{where}: the bounds [{low}, {high}] leave no probability mass under "
                            f"{base}(mu={mu}, sigma={sigma})")
    return param


def parse_space(space: Any, where: str) -> list[Param]:
    """Every entry of a sweep file's ``space`` mapping, validated."""
    if not isinstance(space, dict) or not space:
        raise UserError(f"{where}: expected a non-empty mapping of KEY -> distribution")
    return [parse_param(str(key), spec, f"{where}.{key}") for key, spec in space.items()]
