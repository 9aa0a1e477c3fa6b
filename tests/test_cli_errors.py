"""``python train.py`` with bad input: one line on stderr naming the key, exit code 2, and no run
folder left behind; resumed runs take only the overrides a resumption allows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pinn_exp.run import train

from .conftest import CONF_DIR, run_cli


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


NO_PROC = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("overrides", "key", "allowed"),
    [
        (["noise.level=-0.1"], "noise.level", "noise=gaussian has it"),  # noise=none: no key
        (["noise=gaussian", "noise.level=-0.1"], "noise.level", "non-negative"),
        (["steps=-1"], "steps", "positive integer"),
        (["device=tpu"], "device", "cpu, cuda, auto"),
        (["model=nonexistent"], "model", f"one of {', '.join(options('model'))}"),
        (["balancer=nonsense"], "balancer", f"one of {', '.join(options('balancer'))}"),
        (["stepz=3"], "stepz", "steps"),
        (["--badflag"], "--badflag", "--help"),
        (["pde=navier_stokes", "pde.re=0"], "pde.re", "> 0"),  # the constructor's check
        pytest.param(
            ["hydra.run.dir=/proc/forbidden"], "hydra.run.dir", "a writable folder", marks=NO_PROC
        ),
        pytest.param(["data_dir=/proc/forbidden"], "data_dir", "a writable folder", marks=NO_PROC),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_input_is_one_line_exit_2_and_no_run_folder(tmp_path, overrides, key, allowed):
    out = tmp_path / "outputs"
    result = run_cli("progress=false", f"hydra.run.dir={out / 'run'}", *overrides, cwd=tmp_path)
    line = one_error_line(result)
    assert key in line and allowed in line, line
    assert not out.exists()  # neither the run folder nor the parent Hydra would have made


def test_a_folder_that_existed_is_kept(tmp_path):
    """A rejected run removes only what it created: an empty folder given as run dir stays."""
    kept = tmp_path / "kept"
    kept.mkdir()
    result = run_cli(f"hydra.run.dir={kept}", "pde=navier_stokes", "pde.re=0", cwd=tmp_path)
    assert "pde.re" in one_error_line(result)
    assert kept.is_dir()


def test_multirun_checks_every_job_first(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "model=mlp,nonexistent", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert "model='nonexistent'" in one_error_line(result)
    assert not sweep.exists()


# --- resume ----------------------------------------------------------------------------------
@pytest.fixture
def finished_run(make_cfg, tmp_path) -> Path:
    """A finished 3-step run in tmp_path/run (trained in-process)."""
    train(make_cfg("steps=3", "checkpoint_every=3", "model.width=8", "sampler.n_points=32"))
    return tmp_path / "run"


def test_resume_extends_steps_and_logs_to_the_run(finished_run, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_cli(f"resume={finished_run}", "steps=5", cwd=cwd)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert (metrics["status"], metrics["steps"]) == ("completed", 5)
    assert OmegaConf.load(finished_run / "config.yaml").steps == 5  # a next resume sees it
    assert "resuming" in (finished_run / "train.log").read_text()
    assert list(cwd.iterdir()) == []  # no stray outputs/runs/<date>/<time>/ folder


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["model.width=4", "seed=1"], "model.width=4, seed=1"),
        (["steps=2"], "at least 3"),
    ],
)
def test_resume_refuses_other_changes(finished_run, tmp_path, overrides, named):
    saved = (finished_run / "config.yaml").read_text()
    result = run_cli(f"resume={finished_run}", *overrides, cwd=tmp_path)
    line = one_error_line(result)
    assert named in line and "steps" in line
    assert (finished_run / "config.yaml").read_text() == saved
    assert not (tmp_path / "outputs").exists()
