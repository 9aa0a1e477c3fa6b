"""scripts/inverse_information.py: the Cramér-Rao bounds of the inverse Allen-Cahn and
Navier-Stokes data (Navier-Stokes on the coarsest FE mesh, cached in a temporary folder)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from pinn_exp.problems.navier_stokes_inverse import SENSOR_MARGIN, WAKE_BOX
from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS, HEIGHT, LENGTH

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "inverse_information.py"
_spec = importlib.util.spec_from_file_location("inverse_information_script", _SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

REFINEMENT = "1"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One cache of FE references (Re = 99, 100, 101 at refinement 1) for the module."""
    return tmp_path_factory.mktemp("ns_references")


def bounds(data_dir: Path, n_sensors: int, levels=(0.1,)) -> dict[tuple[str, float], dict]:
    rows = script.navier_stokes_bounds(
        re=100.0,
        levels=levels,
        n_sensors=n_sensors,
        layouts=script.LAYOUTS,
        seed=0,
        rel_step=1e-2,
        refinement=int(REFINEMENT),
        data_dir=data_dir,
    )
    return {(r["layout"], r["level"]): r for r in rows}


def table(output: str) -> list[list[str]]:
    """The table rows (layout first) of the navier_stokes subcommand's output."""
    return [
        line.split()
        for line in output.splitlines()
        if line.split()[:1] in (["uniform"], ["wake"], ["ball"])
    ]


def test_navier_stokes_prints_finite_positive_bounds(data_dir, capsys):
    argv = ["navier_stokes", "--refinement", REFINEMENT, "--data-dir", str(data_dir)]
    script.main([*argv, "--n-sensors", "100", "--level", "0.05", "--level", "0.1", "0.2"])
    rows = table(capsys.readouterr().out)
    assert [(r[0], r[1]) for r in rows] == [
        (layout, level) for layout in script.LAYOUTS for level in ("5%", "10%", "20%")
    ]
    for row in rows:
        sigma_re, relative, n_needed = float(row[-3]), float(row[-2].rstrip("%")), int(row[-1])
        assert math.isfinite(sigma_re) and sigma_re > 0
        assert relative == pytest.approx(sigma_re, rel=1e-2)  # % of Re = 100 is Re's units
        assert n_needed > 0
    # Default levels: 5 % and 10 %.
    script.main([*argv, "--n-sensors", "50", "--layout", "wake"])
    assert [(r[0], r[1]) for r in table(capsys.readouterr().out)] == [
        ("wake", "5%"),
        ("wake", "10%"),
    ]


def test_bound_shrinks_as_one_over_sqrt_n(data_dir):
    few, many = bounds(data_dir, 100), bounds(data_dir, 400)
    for key, row in few.items():
        ratio = row["sigma_re"] / many[key]["sigma_re"]
        assert ratio == pytest.approx(2.0, rel=0.25), key
        # The sensor count for a 3-sigma 1 % identification barely depends on N.
        assert row["n_needed"] == pytest.approx(many[key]["n_needed"], rel=0.5), key


def test_bound_is_linear_in_the_noise_level(data_dir):
    rows = bounds(data_dir, 100, levels=(0.05, 0.1, 0.2))
    for layout in script.LAYOUTS:
        base = rows[(layout, 0.1)]
        for level in (0.05, 0.2):
            row = rows[(layout, level)]
            assert row["sigma_re"] == pytest.approx(base["sigma_re"] * level / 0.1, rel=1e-12)
            assert row["info"] == pytest.approx(base["info"] * (0.1 / level) ** 2, rel=1e-12)


def test_sensor_layouts_stay_in_their_regions():
    centre = np.asarray(CYLINDER_CENTER)
    for layout in script.LAYOUTS:
        pts = script.sensor_points(layout, 500, np.random.default_rng(0), LENGTH)
        assert pts.shape == (500, 2)
        dist = np.linalg.norm(pts - centre, axis=1)
        assert (dist > CYLINDER_RADIUS + SENSOR_MARGIN).all()
        if layout == "uniform":
            assert (pts >= 0).all() and (pts[:, 0] <= LENGTH).all() and (pts[:, 1] <= HEIGHT).all()
        elif layout == "wake":
            (x0, x1), (y0, y1) = WAKE_BOX
            assert ((pts[:, 0] >= x0) & (pts[:, 0] <= x1)).all()
            assert ((pts[:, 1] >= y0) & (pts[:, 1] <= y1)).all()
        else:
            assert (dist <= script.BALL_RADIUS).all()


def test_flags_first_means_allen_cahn():
    assert script.with_command(["--level", "0.1"]) == ["allen_cahn", "--level", "0.1"]
    assert script.with_command([]) == ["allen_cahn"]
    assert script.with_command(["--help"]) == ["--help"]
    assert script.with_command(["navier_stokes", "--level", "0.1"])[0] == "navier_stokes"


@pytest.mark.slow
def test_allen_cahn_runs_both_ways(capsys):
    script.main(["allen_cahn", "--level", "0.1", "--n-sensors", "16"])
    new = capsys.readouterr().out
    script.main(["--level", "0.1", "--n-sensors", "16"])
    assert capsys.readouterr().out == new
    assert "5 snapshots x 16 sensors, noise 10%" in new
    bound = float(new.split("std(d) >= ")[1].split()[0])
    assert math.isfinite(bound) and bound > 0
