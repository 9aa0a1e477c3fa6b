"""Focus regions: fixed shares of a set of random points drawn in balls or boxes of a domain.

Shared by the collocation samplers (``sampler.focus``, :mod:`pinn_exp.samplers`) and the sensor
layout of the Navier-Stokes inverse problem (``pde.sensor_focus``). A region is a mapping with
``fraction`` in ``(0, 1]`` (the fractions sum to ``<= 1``) and either ``centre`` + ``radius``
(the closed ball ``|x - centre| <= radius``) or ``low`` + ``high`` (the closed box
``low <= x <= high``), in the problem's own point coordinates. A focused draw of ``n`` points
holds ``round(fraction * n)`` points uniform in ``Omega`` intersected with each region and the
rest uniform in ``Omega``, shuffled together:

.. math:: q = (1 - \\sum_i f_i) \\, U_\\Omega + \\sum_i f_i \\, U_{\\Omega \\cap R_i}

Region points are found by rejection from the domain's own uniform draws, so they never leave
it. Every message names the configuration key the regions came from (``key``, e.g.
``"sampler.focus"``), so that one code serves several options.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["check_regions", "draw_focused", "inside", "plain_regions", "region_counts"]

Domain = Callable[[int, torch.Generator], Tensor]
"""Draws ``n`` i.i.d. uniform points of a domain, shape ``(n, d)``."""

REGION_KEYS = ("fraction", "centre", "radius", "low", "high")
MIN_ACCEPTANCE = 1e-3
"""A region that keeps fewer than this fraction of the domain's uniform draws is an error."""
MAX_BATCH = 1 << 20
"""Candidate points per ``domain`` call while filling a region (bounds memory)."""


def _number(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` if it is not one (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _coords(name: str, value: object) -> tuple[float, ...]:
    coords = None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes) and len(value) > 0:
        coords = tuple(_number(v) for v in value)
    if coords is None or None in coords:
        raise ValueError(
            f"{name} must be a list of finite numbers, one per coordinate, got {value!r}"
        )
    return coords


def check_regions(focus: object, key: str) -> tuple[dict, ...] | None:
    """``focus`` checked and copied to plain data: a tuple of dicts ``{"fraction", "centre",
    "radius"}`` (ball) or ``{"fraction", "low", "high"}`` (box), coordinates as float tuples.

    ``None`` or an empty list is no focus (``None`` is returned). OmegaConf's
    ``ListConfig``/``DictConfig`` (what Hydra's ``instantiate`` passes) are a
    ``Sequence``/``Mapping`` and are read as such. Errors name ``key``, e.g. ``key[0].radius``.
    """
    if focus is None:
        return None
    if not isinstance(focus, Sequence) or isinstance(focus, str | bytes):
        raise ValueError(
            f"{key} must be null or a list of regions (each: fraction and either centre + "
            f"radius or low + high), got {focus!r}"
        )
    regions = []
    for i, region in enumerate(focus):
        name = f"{key}[{i}]"
        if not isinstance(region, Mapping):
            raise ValueError(
                f"{name} must be a mapping with fraction and either centre + radius (a ball) "
                f"or low + high (a box), got {region!r}"
            )
        unknown = sorted(str(k) for k in region if k not in REGION_KEYS)
        if unknown:
            raise ValueError(
                f"{name} has unknown keys {unknown}; allowed: {', '.join(REGION_KEYS)}"
            )
        fraction = _number(region.get("fraction"))
        if fraction is None or not 0 < fraction <= 1:
            raise ValueError(
                f"{name}.fraction must be a number in (0, 1], got {region.get('fraction')!r}"
            )
        keys = {k for k in region if k != "fraction"}
        if keys == {"centre", "radius"}:
            centre = _coords(f"{name}.centre", region["centre"])
            radius = _number(region["radius"])
            if radius is None or radius <= 0:
                raise ValueError(f"{name}.radius must be a number > 0, got {region['radius']!r}")
            regions.append({"fraction": fraction, "centre": centre, "radius": radius})
        elif keys == {"low", "high"}:
            low = _coords(f"{name}.low", region["low"])
            high = _coords(f"{name}.high", region["high"])
            if len(high) != len(low):
                raise ValueError(
                    f"{name}.high must have as many coordinates as {name}.low ({len(low)}), "
                    f"got {len(high)}"
                )
            if not all(a < b for a, b in zip(low, high, strict=True)):
                raise ValueError(
                    f"{name}.high must be > {name}.low in every coordinate, got low={list(low)} "
                    f"high={list(high)}"
                )
            regions.append({"fraction": fraction, "low": low, "high": high})
        else:
            raise ValueError(
                f"{name} must give either centre + radius (a ball) or low + high (a box) besides "
                f"fraction, got keys {sorted(str(k) for k in region)}"
            )
    total = math.fsum(r["fraction"] for r in regions)
    if total > 1 + 1e-12:
        terms = " + ".join(f"{r['fraction']:g}" for r in regions)
        raise ValueError(f"{key} fractions must sum to <= 1, got {terms} = {total:g}")
    return tuple(regions) or None


def plain_regions(regions: Sequence[dict]) -> list[dict]:
    """Checked ``regions`` as one would write them (lists, not tuples), for ``__repr__``."""
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in r.items()} for r in regions]


def region_counts(regions: Sequence[dict], n: int) -> list[int]:
    """Points per region of a draw of ``n``: ``round(fraction * n)``, never more than ``n`` in
    all (rounding up may overshoot by less than one point per region: the last regions give
    one back each)."""
    counts = [round(r["fraction"] * n) for r in regions]
    for i in reversed(range(len(counts))):
        if sum(counts) <= n:
            break
        counts[i] -= 1
    return counts


def draw_focused(
    domain: Domain,
    n: int,
    generator: torch.Generator,
    regions: Sequence[dict] | None,
    key: str,
) -> Tensor:
    """``n`` points of ``domain`` following the region mixture ``q`` (module docstring).

    ``regions`` come from :func:`check_regions` with the same ``key``. Without regions this is
    one ``domain(n, generator)`` call, so the generator is consumed exactly as by a plain draw.
    With regions: one ``domain`` call for the uniform rest, rejection batches per region
    (:func:`_draw_region`), then one ``randperm`` shuffle (so the set is exchangeable, with no
    block of region points); a region that keeps fewer than :data:`MIN_ACCEPTANCE` of the
    domain's draws raises a ``ValueError`` naming ``key[i]``.
    """
    if regions is None:
        return domain(n, generator)
    counts = region_counts(regions, n)
    n_rest = n - sum(counts)
    parts = [domain(n_rest, generator)] if n_rest else []
    parts += [
        _draw_region(domain, generator, regions, i, k, key) for i, k in enumerate(counts) if k > 0
    ]
    x = torch.cat(parts)
    for i in range(len(regions)):  # d is known now: regions left empty are checked too
        inside(regions, i, x[:0], key)
    order = torch.randperm(n, generator=generator, device=generator.device)
    return x[order.to(x.device)]


def _draw_region(
    domain: Domain,
    generator: torch.Generator,
    regions: Sequence[dict],
    i: int,
    k: int,
    key: str,
) -> Tensor:
    """``k`` points uniform in the domain intersected with ``regions[i]``, by rejection."""
    # A region keeping the fraction MIN_ACCEPTANCE of the draws fills within the budget (in
    # expectation; at least 100 points' worth, so small k is judged fairly).
    budget = math.ceil(max(k, 100) / MIN_ACCEPTANCE)
    kept, have, drawn, m = [], 0, 0, min(max(4 * k, 1024), MAX_BATCH)
    while have < k:
        if drawn >= budget:
            raise ValueError(
                f"{key}[{i}] = {plain_regions(regions[i : i + 1])[0]} hardly intersects the "
                f"domain: {have} of {drawn} uniform candidates fell inside (acceptance rate "
                f"{have / drawn:.2g}, the minimum is {MIN_ACCEPTANCE:g}); {k} points "
                f"were needed; check its coordinates against the problem's points"
            )
        m = min(m, budget - drawn)
        x = domain(m, generator)
        x = x[inside(regions, i, x, key)]
        kept.append(x)
        have, drawn = have + x.shape[0], drawn + m
        # Next batch from the acceptance so far (+25 %), or 8x larger while none fell in.
        rate = have / drawn
        m = math.ceil(1.25 * (k - have) / rate) + 64 if have else 8 * m
        m = min(m, MAX_BATCH)
    return torch.cat(kept)[:k]


def inside(regions: Sequence[dict], i: int, x: Tensor, key: str) -> Tensor:
    """Boolean mask of the points of ``x`` ``(n, d)`` in the closed ball or box
    ``regions[i]``; a region with other than ``d`` coordinates raises, naming ``key[i]``."""
    region = regions[i]
    name = "centre" if "centre" in region else "low"
    if len(region[name]) != x.shape[1]:
        raise ValueError(
            f"{key}[{i}].{name} has {len(region[name])} coordinates, but the domain's "
            f"points have d={x.shape[1]}"
        )
    if name == "centre":
        centre = x.new_tensor(region["centre"])
        return (x - centre).norm(dim=1) <= region["radius"]
    low, high = x.new_tensor(region["low"]), x.new_tensor(region["high"])
    return ((x >= low) & (x <= high)).all(dim=1)
