"""Operating points, MAC/latency budgets and the battery curve: the one place they live.

NumPy only. The converter calls ``calibrate_policy`` to write them into the
manifest, ``load_manifest`` parses them into the types below, the scheduler and
the golden-vector writer apply them. Laid out as the Android core's classes
(android_demo/core/src/main/java/dev/ravit/core/), so a change lands in both:

    OperatingPoint              OperatingPoint.java
    BatteryPolicy               BatteryPolicy.java (constructor checks, thresholdsAt)
    thresholds_for_mac_budget   BatteryPolicy.forMacBudget
    thresholds_for_latency_budget   (Python only: needs latencies measured here)
    calibrate_policy            (converter only)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from ravit_keras.deploy.runtime import fields as f
from ravit_keras.exits.uncertainty import validate_thresholds

BATTERY_CURVE = "thresholds_high at battery >= high, thresholds_low at battery <= low, linear in between"


def _thresholds(value: Any, key: str, num_exits: int, num_classes: int) -> tuple[float, ...]:
    values = f.numbers(value, key)  # Finite numbers first, so the message names the key.
    try:
        return tuple(float(t) for t in validate_thresholds(list(values), num_exits, num_classes))
    except ValueError as e:
        raise f.bad(key, str(e)) from None


# OperatingPoint.java ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """Per-exit thresholds calibrated for a MAC budget, with what they gave on calibration.

    ``interval`` (optional, informative): ``exits.intervals.operating_point_interval``
    of those figures on the calibration images, ``{"confidence", "images",
    "accuracy": [lo, hi], "avg_macs": [lo, hi], "mac_fraction": [lo, hi], "method"}``.
    No runtime decides on it, so it is kept as written and not validated, as the
    Android core (which skips it) does.
    """

    mac_fraction: float | None
    thresholds: tuple[float, ...]
    accuracy: float
    avg_macs: float
    exit_fractions: tuple[float, ...]
    interval: Any = None

    @classmethod
    def from_dict(cls, d: Any, key: str, num_exits: int, num_classes: int) -> "OperatingPoint":
        """Parses and validates ``d`` (``operating_points[i]``); errors name ``key``."""
        fraction = d.get("mac_fraction") if isinstance(d, dict) else None
        if fraction is not None:
            fraction = f.number(fraction, f"{key}.mac_fraction")
            if not 0 < fraction <= 1:
                raise f.bad(f"{key}.mac_fraction", f"should be in (0, 1], got {fraction}")
        exit_fractions = f.numbers(f.get(d, "exit_fractions", key), f"{key}.exit_fractions")
        if len(exit_fractions) != num_exits or any(not 0 <= x <= 1 for x in exit_fractions):
            raise f.bad(f"{key}.exit_fractions", f"should be {num_exits} fractions in [0, 1], got {exit_fractions}")
        avg = f.number(f.get(d, "avg_macs", key), f"{key}.avg_macs")
        if avg <= 0:
            raise f.bad(f"{key}.avg_macs", f"should be positive, got {avg}")
        return cls(
            mac_fraction=fraction,
            thresholds=_thresholds(f.get(d, "thresholds", key), f"{key}.thresholds", num_exits, num_classes),
            accuracy=f.in_range(f.number(f.get(d, "accuracy", key), f"{key}.accuracy"), 0.0, 1.0,
                                f"{key}.accuracy"),
            avg_macs=avg,
            exit_fractions=exit_fractions,
            interval=d.get("interval"),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {} if self.mac_fraction is None else {"mac_fraction": self.mac_fraction}
        d.update(thresholds=list(self.thresholds), accuracy=self.accuracy, avg_macs=self.avg_macs,
                 exit_fractions=list(self.exit_fractions))
        if self.interval is not None:
            d["interval"] = self.interval
        return d


# BatteryPolicy.java -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BatteryPolicy:
    """Default thresholds at battery >= ``high``, saver ones at <= ``low``, linear between."""

    high: float
    low: float
    thresholds_high: tuple[float, ...]
    thresholds_low: tuple[float, ...]
    curve: str = BATTERY_CURVE

    @classmethod
    def from_thresholds(cls, default: Sequence[float], saver: Sequence[float], high: float,
                        low: float) -> "BatteryPolicy":
        """The converter's policy: ``saver`` never exits earlier than ``default`` (element-wise max)."""
        return cls(high=high, low=low, thresholds_high=tuple(float(t) for t in default),
                   thresholds_low=tuple(float(max(a, b)) for a, b in zip(saver, default)))

    @classmethod
    def from_dict(cls, d: Any, num_exits: int, num_classes: int) -> "BatteryPolicy":
        """Parses and validates the manifest's ``battery_policy``; errors name the key."""
        key = "battery_policy"
        high = f.number(f.get(d, "high", key), f"{key}.high")
        low = f.number(f.get(d, "low", key), f"{key}.low")
        if not 0.0 <= low <= high <= 1.0:
            raise f.bad(key, f"levels must satisfy 0 <= low <= high <= 1, got low={low}, high={high}")
        return cls(
            high=high, low=low,
            thresholds_high=_thresholds(f.get(d, "thresholds_high", key), f"{key}.thresholds_high",
                                        num_exits, num_classes),
            thresholds_low=_thresholds(f.get(d, "thresholds_low", key), f"{key}.thresholds_low",
                                       num_exits, num_classes),
            curve=f.string(d.get("curve", BATTERY_CURVE), f"{key}.curve"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"curve": self.curve, "high": self.high, "low": self.low,
                "thresholds_high": list(self.thresholds_high), "thresholds_low": list(self.thresholds_low)}

    def thresholds_at(self, level: float) -> list[float]:
        """Thresholds at battery ``level`` in [0, 1] (``BatteryPolicy.thresholdsAt``)."""
        if not 0.0 <= level <= 1.0 or math.isnan(level):
            raise ValueError(f"Battery level must be in [0, 1], got {level}.")
        hi, lo = self.high, self.low
        t_hi, t_lo = np.asarray(self.thresholds_high), np.asarray(self.thresholds_low)
        w = 0.0 if level >= hi else 1.0 if level <= lo else (hi - level) / (hi - lo)
        return [float(t) for t in (1 - w) * t_hi + w * t_lo]


def thresholds_for_mac_budget(full_model_macs: float, points: Sequence[OperatingPoint], budget: float,
                              current: Sequence[float]) -> list[float]:
    """Most accurate operating point whose average MACs fit ``budget`` (``forMacBudget``).

    ``budget`` <= 1 is a fraction of ``full_model_macs``; a budget covering the full
    model keeps ``current``.
    """
    macs = budget * full_model_macs if budget <= 1 else budget
    if macs >= full_model_macs:
        return [float(t) for t in current]
    fitting = [p for p in points if p.avg_macs <= macs]
    if not fitting:
        cheapest = (f"the cheapest needs {min(p.avg_macs for p in points):,.0f}" if points
                    else "the manifest has no operating points")
        raise ValueError(f"No calibrated operating point fits {macs:,.0f} MACs; {cheapest}.")
    return list(max(fitting, key=lambda p: p.accuracy).thresholds)


def thresholds_for_latency_budget(points: Sequence[OperatingPoint], branch_latency_ms: Sequence[float],
                                  budget_ms: float) -> list[float]:
    """Most accurate operating point (or "always run every exit") whose expected latency fits.

    Expected latency = Σ_i f_i · (t_1 + … + t_i) with the calibrated exit fractions
    f_i and the measured submodel latencies t_i.
    """
    cumulative = np.cumsum(branch_latency_ms)
    n = len(branch_latency_ms)
    candidates = [OperatingPoint(None, (0.0,) * (n - 1), float("inf"), 1.0, (0.0,) * (n - 1) + (1.0,))]
    best = None
    for p in candidates + list(points):
        expected = float(np.dot(p.exit_fractions, cumulative))
        if expected <= budget_ms and (best is None or p.accuracy > best.accuracy):
            best = p
    if best is None:
        raise ValueError(
            f"No operating point fits {budget_ms} ms; the first exit alone takes {cumulative[0]:.3f} ms here."
        )
    return list(best.thresholds)


def calibrate_policy(logits, labels, exit_macs: Sequence[int], full_macs: int, *,
                     mac_budgets: Sequence[float], max_accuracy_drop: float, battery_high: float,
                     battery_low: float, num_exits: int = 1
                     ) -> tuple[tuple[float, ...], tuple[OperatingPoint, ...], BatteryPolicy]:
    """Default thresholds, MAC-budget operating points and the battery policy.

    Calibrated on per-exit ``logits`` of labelled images; without them (``None``)
    the thresholds are 0 (no early exit) and there are no operating points. The
    battery saver is the cheapest operating point (the default without one).
    Each operating point carries its ``interval`` on these images
    (``exits.intervals.operating_point_interval``).
    """
    if logits is None:
        no_exit = (0.0,) * (num_exits - 1)
        return no_exit, (), BatteryPolicy.from_thresholds(no_exit, no_exit, battery_high, battery_low)
    from ravit_keras.exits import calibrate_thresholds
    from ravit_keras.exits.intervals import operating_point_interval

    default = tuple(float(t) for t in calibrate_thresholds(
        logits, labels, exit_macs, max_accuracy_drop=max_accuracy_drop)["thresholds"])
    points = []
    for fraction in mac_budgets:
        budget = fraction * full_macs
        if budget < exit_macs[0]:
            continue
        chosen = calibrate_thresholds(logits, labels, exit_macs, mac_budget=budget)
        r = chosen["calibration"]
        interval = operating_point_interval(logits, labels, exit_macs, chosen["thresholds"], full_macs=full_macs)
        points.append(OperatingPoint(fraction, tuple(float(t) for t in chosen["thresholds"]), r["accuracy"],
                                     r["avg_macs"], tuple(r["exit_fractions"]), interval))
    saver = points[-1].thresholds if points else default
    return default, tuple(points), BatteryPolicy.from_thresholds(default, saver, battery_high, battery_low)

