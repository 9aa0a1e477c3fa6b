"""Every option of every config group composes and instantiates; bad values name the key."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from pinn_exp.config import ConfigError
from pinn_exp.run import build

from .conftest import CONF_DIR

GROUP_OPTIONS = sorted(
    (path.parent.name, path.stem)
    for path in CONF_DIR.glob("*/*.yaml")
    if path.parent.name not in ("experiment", "hydra", "specialize")
)


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=lambda v: str(v))
def test_every_option_composes_and_builds(make_cfg, group, option):
    parts = build(make_cfg(f"{group}={option}"))
    assert all(p.dtype == torch.float64 for p in parts.model.parameters())
    x = parts.sampler.points()
    terms = parts.problem.losses(parts.model, x)
    assert all(torch.isfinite(v) for v in terms.values())


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes(make_cfg, preset):
    cfg = make_cfg(f"experiment={preset}", tiny=False)
    assert cfg.steps > 0


NOISY_PRESETS = ["allen_cahn_inverse_cpu", "ns_inverse_cpu", "ablation_ns_inverse_cpu"]


@pytest.mark.parametrize("preset", NOISY_PRESETS)
def test_noisy_presets_take_every_noise_option(make_cfg, preset):
    """A preset must not set arguments of one noise option (noise=none takes none)."""
    for noise, cls in (("none", "NoNoise"), ("gaussian", "GaussianNoise")):
        cfg = make_cfg(f"experiment={preset}", f"noise={noise}", tiny=False)
        assert type(instantiate(cfg.noise)).__name__ == cls


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("steps=-5", "steps"),
        ("steps=0", "steps"),
        ("eval_every=0", "eval_every"),
        ("device=tpu", "device"),
        ("dtype=float16", "dtype"),
        ("model.width=-3", "model.width"),
        ("optim.lr=0", "optim.lr"),
        ("sampler.n_points=0", "sampler.n_points"),
    ],
)
def test_bad_values_name_the_key(make_cfg, override, key):
    with pytest.raises(ConfigError, match=key):
        build(make_cfg(override))


def test_config_tree_has_design_groups():
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    assert {"pde", "model", "balancer", "surgery", "sampler", "noise", "anchor", "optim"} <= groups
    for path in CONF_DIR.glob("*/*.yaml"):
        first = Path(path).read_text().splitlines()[0]
        assert first.startswith("#"), f"{path} must start with a comment naming its method"
