"""Shared fixtures: compose the real config tree, shrunk, with outputs under tmp_path."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
ROOT = CONF_DIR.parent


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python train.py *args`` in ``cwd``, one thread, its output captured."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=os.environ | {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
        capture_output=True,
        text=True,
        timeout=300,
    )


# Small enough for a few-step run on 2 cores; every option is still exercised.
TINY = [
    "steps=6",
    "log_every=2",
    "eval_every=3",
    "checkpoint_every=3",
    "progress=false",
    "model.width=16",
    "model.depth=2",
    "sampler.n_points=64",
]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table_rows(markdown: str, table: int = 0) -> list[list[str]]:
    """The body rows of the ``table``-th markdown table in ``markdown``, cells stripped."""
    tables, previous = [], ""
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return [[c.strip() for c in line.strip("|").split("|")] for line in tables[table][2:]]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One reference cache for the whole session (the spectral solve takes a few seconds)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(tmp_path, data_dir):
    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(
                config_name="config",
                overrides=[
                    *(TINY if tiny else []),
                    f"output_dir={tmp_path / 'run'}",
                    f"data_dir={data_dir}",
                    *overrides,
                ],
            )

    return make
