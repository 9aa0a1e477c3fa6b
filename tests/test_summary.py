"""pinn_exp.summary on synthetic sweep folders: grouping, statistics, status counts, plots."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from pinn_exp import summary, summary_plots

from .conftest import read_csv, table_rows

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "summarize.py"
_spec = importlib.util.spec_from_file_location("summarize_script", _SCRIPT)
summarize_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summarize_script)
EXCLUDE = ["seed", "resume", "output_dir", "data_dir", "progress"]


def make_run(
    root: Path,
    overrides: list[str],
    metrics: dict | None,
    exclude: list[str] | None = EXCLUDE,
    folder: str | None = None,
) -> Path:
    """A run folder as Hydra and run.train leave it (without events unless added)."""
    if folder is None:
        seed = next((o.split("=")[1] for o in overrides if o.startswith("seed=")), "0")
        rest = [o for o in overrides if not o.startswith("seed=")]
        folder = f"cfg_{','.join(sorted(rest))}/seed={seed}"
    run = root / folder
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if exclude is not None:
        hydra_cfg = {"hydra": {"job": {"config": {"override_dirname": {"exclude_keys": exclude}}}}}
        (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra_cfg))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def write_events(run: Path, scalars: dict[str, dict[int, float]]) -> None:
    """TensorBoard event files in ``run``: ``{tag: {step: value}}``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run))
    for tag, values in scalars.items():
        for step, value in values.items():
            writer.add_scalar(tag, value, step)
    writer.close()


def ok(rel_l2: float, **extra) -> dict:
    return {
        "status": "completed",
        "steps": 10,
        "wall_time_s": 2.0 + rel_l2,
        "step_time_ms": 10.0 + rel_l2,
        "rel_l2": rel_l2,
        "rel_l2_u": rel_l2,
        **extra,
    }


def test_groups_differ_only_in_seed_and_excluded_keys(tmp_path):
    errors = {"none": [0.5, 0.3, 0.4], "ema": [0.1, 0.2, 0.6]}
    for balancer, values in errors.items():
        for seed, value in enumerate(values):
            # data_dir differs per run but is excluded, like seed
            overrides = [f"balancer={balancer}", f"seed={seed}", "steps=10", f"data_dir=/d{seed}"]
            # the same configuration given in another order (another command line) is one group
            make_run(tmp_path, overrides[::-1] if seed == 2 else overrides, ok(value))
    text = summary.summarize(tmp_path, plots=False)
    rows = read_csv(tmp_path / "summary.csv")
    assert [r["balancer"] for r in rows] == ["ema", "none"]  # sorted by choice
    for row in rows:
        values = errors[row["balancer"]]
        assert int(row["n"]) == 3 and row["diverged"] == row["failed"] == "0"
        assert row["seeds"] == "0 1 2"
        assert float(row["rel_l2_mean"]) == pytest.approx(statistics.fmean(values))
        assert float(row["rel_l2_std"]) == pytest.approx(statistics.stdev(values))
        assert float(row["step_time_ms_median"]) == pytest.approx(
            statistics.median(10.0 + v for v in values)
        )
        assert float(row["wall_time_s_mean"]) == pytest.approx(statistics.fmean(values) + 2.0)
    # markdown: only the swept key is a column; the common override is listed once
    md_rows = table_rows(text)
    assert [r[0] for r in md_rows] == ["ema", "none"]
    assert "`steps=10`" in text and "data_dir" not in text
    assert md_rows[0][1].startswith("**")  # lowest mean in bold
    assert (tmp_path / "summary.md").read_text() == text


def test_diverged_and_failed_are_counted_not_averaged(tmp_path):
    make_run(tmp_path, ["balancer=ema", "seed=0"], ok(0.2))
    make_run(tmp_path, ["balancer=ema", "seed=1"], ok(0.4))
    make_run(tmp_path, ["balancer=ema", "seed=2"], {"status": "diverged", "steps": 3})
    make_run(tmp_path, ["balancer=ema", "seed=3"], ok(float("nan")))  # non-finite = diverged
    make_run(tmp_path, ["balancer=none", "seed=0"], ok(0.5))
    make_run(tmp_path, ["balancer=none", "seed=1"], None)  # crashed: no metrics.json
    make_run(tmp_path, ["balancer=none", "seed=2"], {"status": "killed"})  # unknown: failed
    text = summary.summarize(tmp_path, plots=False)
    ema, none = read_csv(tmp_path / "summary.csv")
    assert (ema["n"], ema["diverged"], ema["failed"]) == ("2", "2", "0")
    assert float(ema["rel_l2_mean"]) == pytest.approx(0.3)
    assert (none["n"], none["diverged"], none["failed"]) == ("1", "0", "2")
    assert float(none["rel_l2_mean"]) == pytest.approx(0.5)
    assert none["rel_l2_std"] == ""  # undefined for n = 1
    md = {r[0]: r for r in table_rows(text)}
    assert md["ema"][2:5] == ["2", "2", "0"] and md["none"][2:5] == ["1", "0", "2"]


def test_all_runs_of_a_configuration_failed(tmp_path):
    make_run(tmp_path, ["balancer=ema", "seed=0"], ok(0.2))
    make_run(tmp_path, ["balancer=none", "seed=0"], None)
    text = summary.summarize(tmp_path)  # plots too: nothing to average must not break them
    none = read_csv(tmp_path / "summary.csv")[1]
    assert (none["n"], none["failed"], none["rel_l2_mean"]) == ("0", "1", "")
    assert "| none | – |" in text


def test_inverse_metrics_become_columns(tmp_path):
    for anchor, preds in {"none": [90.0, 110.0], "softplus": [99.0, 101.0]}.items():
        for seed, pred in enumerate(preds):
            extra = {"re_true": 100.0, "re_pred": pred, "re_rel_error": abs(pred - 100) / 100}
            make_run(tmp_path, [f"anchor={anchor}", f"seed={seed}"], ok(0.1, **extra))
    text = summary.summarize(tmp_path, plots=False)
    header = next(line for line in text.splitlines() if line.startswith("|"))
    assert "| rel_l2 | re_rel_error | re_pred |" in header
    rows = {r["anchor"]: r for r in read_csv(tmp_path / "summary.csv")}
    assert float(rows["none"]["re_pred_mean"]) == pytest.approx(100.0)
    assert float(rows["none"]["re_pred_std"]) == pytest.approx(statistics.stdev([90, 110]))
    assert float(rows["softplus"]["re_rel_error_mean"]) == pytest.approx(0.01)
    assert float(rows["none"]["re_true"]) == 100.0
    assert "re_true = 100" in text


def test_numeric_choices_sort_by_value_and_several_keys_vary(tmp_path):
    for width in (8, 16, 128):
        for surgery in ("pcgrad", "none"):
            make_run(tmp_path, [f"model.width={width}", f"surgery={surgery}", "seed=0"], ok(0.1))
    summary.summarize(tmp_path, plots=False)
    rows = read_csv(tmp_path / "summary.csv")
    assert [(r["model.width"], r["surgery"]) for r in rows] == [
        ("8", "none"),
        ("8", "pcgrad"),
        ("16", "none"),
        ("16", "pcgrad"),
        ("128", "none"),
        ("128", "pcgrad"),
    ]


def test_exclude_keys_come_from_the_runs_hydra_config(tmp_path):
    # `tag` is excluded from the folder name in this sweep, so it does not split configurations.
    for seed in range(2):
        make_run(tmp_path, [f"seed={seed}", f"tag=t{seed}"], ok(0.1), exclude=["seed", "tag"])
    groups = summary.group_runs(summary.find_runs(tmp_path))
    assert len(groups) == 1 and len(groups[0].runs) == 2
    # without hydra.yaml the defaults of conf/config.yaml apply, and `tag` does split
    other = tmp_path / "other"
    for seed in range(2):
        make_run(other, [f"seed={seed}", f"tag=t{seed}"], ok(0.1), exclude=None)
    assert len(summary.group_runs(summary.find_runs(other))) == 2


def test_override_prefixes_and_seed_from_config(tmp_path):
    assert summary.parse_overrides(["+experiment=a", "~x", "++b.c=1=2"]) == {
        "experiment": "a",
        "x": "",
        "b.c": "1=2",
    }
    run = make_run(tmp_path, ["balancer=ema"], ok(0.1), folder="single")
    (run / ".hydra" / "config.yaml").write_text("seed: 7\nsteps: 10\n")
    (loaded,) = summary.find_runs(tmp_path)
    assert loaded.seed == 7 and loaded.config_key == (("balancer", "ema"),)


def test_hidden_folders_are_skipped_and_an_empty_sweep_is_an_error(tmp_path, capsys):
    make_run(tmp_path, ["seed=0"], ok(0.1), folder=".submitit/123")
    with pytest.raises(FileNotFoundError):
        summary.summarize(tmp_path)
    assert summarize_script.main([str(tmp_path)]) == 1
    assert "no run folders" in capsys.readouterr().err


def test_plots_from_tensorboard_events(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    curves = {}
    for balancer in ("none", "ema"):
        for seed in range(2):
            run = make_run(
                tmp_path,
                [f"balancer={balancer}", f"seed={seed}"],
                ok(0.1 + seed, re_true=100.0, re_pred=100.0 + seed, re_rel_error=seed / 100),
            )
            writer = SummaryWriter(str(run))
            for step in (10, 20, 30):
                writer.add_scalar("eval/rel_l2", 1.0 / step + seed, step)
                writer.add_scalar("unknown/re", 50.0 + step + seed, step)
                writer.add_scalar("loss/pde", 1.0, step)
                writer.add_scalar("eval/wall_time_s", 2.0 * step + seed, step)
            writer.add_scalar("eval/rel_l2", 7.0, 30)  # logged twice (resume): the last wins
            writer.close()
            curves[(balancer, seed)] = run
    scalars = summary.load_scalars(curves[("ema", 1)])
    assert set(scalars) == {"eval/rel_l2", "eval/wall_time_s", "unknown/re"}
    assert scalars["eval/rel_l2"] == ([10, 20, 30], pytest.approx([1.1, 1.05, 7.0]))

    text = summary.summarize(tmp_path)
    for name in ("error_vs_step.png", "error_vs_time.png", "final_error.png", "unknown_re.png"):
        assert (tmp_path / name).stat().st_size > 1000
        assert f"({name})" in text

    # no gradient diagnostics logged anywhere: no such plot or column, and the page says so
    assert not (tmp_path / "alignment_vs_step.png").exists()
    assert not (tmp_path / "conflict_vs_step.png").exists()
    assert "`align/score`: logged by no configuration" in text
    assert "`grad/conflict_fraction`: logged by no configuration" in text
    assert not any(k.startswith("final_") for k in read_csv(tmp_path / "summary.csv")[0])

    (group,) = [g for g in summary.group_runs(summary.find_runs(tmp_path)) if g.key[0][1] == "ema"]
    scalars = {r.path: summary.load_scalars(r.path) for r in group.runs}
    band = summary_plots.aggregate(summary_plots.seed_curves(group, scalars, "unknown/re"))
    assert band.x.tolist() == [10, 20, 30] and band.count.tolist() == [2, 2, 2]
    assert band.mean == pytest.approx([60.5, 70.5, 80.5])
    assert band.lo.tolist() == [60, 70, 80] and band.hi.tolist() == [61, 71, 81]
    # against the wall time: each seed's own (wall time, error) points, interpolated onto the
    # union of the seeds' times; seed 1's clock runs 1 s behind seed 0's
    curves = summary_plots.seed_curves(group, scalars, "eval/rel_l2", x_tag="eval/wall_time_s")
    assert curves == [
        ([20, 40, 60], pytest.approx([0.1, 0.05, 7.0])),
        ([21, 41, 61], pytest.approx([1.1, 1.05, 7.0])),
    ]
    band = summary_plots.aggregate(curves)
    assert band.x.tolist() == [20, 21, 40, 41, 60, 61]
    assert band.count.tolist() == [1, 2, 2, 2, 2, 1]  # no extrapolation past a seed's range
    seed0_at_21 = 0.1 - 0.05 / 20
    assert band.mean[:2] == pytest.approx([0.1, (seed0_at_21 + 1.1) / 2])
    assert band.lo[1] == pytest.approx(seed0_at_21) and band.hi[1] == pytest.approx(1.1)
    import matplotlib.pyplot as plt

    path = tmp_path / "t.png"
    drawn = summary_plots._curve_plot(
        [group], scalars, "eval/rel_l2", [], path, "e", x_tag="eval/wall_time_s"
    )
    assert drawn and path.stat().st_size > 1000
    plt.close("all")


def test_aggregate_on_a_common_grid():
    curves = [([0, 2, 4], [0.0, 2.0, 4.0]), ([1, 3, 5], [10.0, 30.0, 50.0])]
    band = summary_plots.aggregate(curves)
    assert band.x.tolist() == [0, 1, 2, 3, 4, 5]
    assert band.count.tolist() == [1, 2, 2, 2, 2, 1]
    # seed 0 is y = x on [0, 4], seed 1 is y = 10 x on [1, 5]
    assert band.mean == pytest.approx([0, 5.5, 11, 16.5, 22, 50])
    assert band.lo == pytest.approx([0, 1, 2, 3, 4, 50])
    assert band.hi == pytest.approx([0, 10, 20, 30, 40, 50])
    assert band.std[1:5] == pytest.approx([statistics.stdev([x, 10 * x]) for x in (1, 2, 3, 4)])
    assert math.isnan(band.std[0]) and math.isnan(band.std[5])  # one seed: undefined
    # an explicit grid; points no seed covers are dropped; non-finite points are skipped;
    # unsorted input is sorted
    curves = [([4, 0, 2, 3], [4.0, 0.0, 2.0, float("nan")]), ([0, 4], [1.0, 1.0])]
    band = summary_plots.aggregate(curves, grid=[-1, 1, 3, 9])
    assert band.x.tolist() == [1, 3] and band.count.tolist() == [2, 2]
    assert band.mean == pytest.approx([1.0, 2.0]) and band.hi == pytest.approx([1.0, 3.0])
    assert summary_plots.aggregate([]) is None
    assert summary_plots.aggregate([([1, 2], [float("nan")] * 2)]) is None


# align/score and grad/conflict_fraction per (balancer, seed), at steps 10, 20, 30
ALIGN = {
    ("ema", 0): [0.1, 0.2, 0.3],
    ("ema", 1): [0.3, 0.4, 0.5],
    ("gradnorm", 0): [-0.5, -0.2, -0.1],
    ("gradnorm", 1): [-0.3, 0.0, 0.2],
}
CONFLICT = {
    ("ema", 0): [1.0, 2 / 3, 1 / 3],
    ("ema", 1): [2 / 3, 1 / 3, 0.0],
    ("gradnorm", 0): [1 / 3, 1 / 3, 2 / 3],
    ("gradnorm", 1): [1.0, 1.0, 1.0],
}


def test_gradient_diagnostics_plots_columns_and_notes(tmp_path):
    for balancer in ("ema", "gradnorm", "none"):
        for seed in range(2):
            run = make_run(tmp_path, [f"balancer={balancer}", f"seed={seed}"], ok(0.1 + seed))
            events = {"eval/rel_l2": {10: 0.5, 20: 0.2, 30: 0.1}}
            if balancer != "none":  # the fast path logs no per-term gradient diagnostics
                events["align/score"] = dict(zip((10, 20, 30), ALIGN[balancer, seed]))
                events["grad/conflict_fraction"] = dict(zip((10, 20, 30), CONFLICT[balancer, seed]))
                events["align/pde"] = {10: 0.9}  # a per-term alignment: not the score
            write_events(run, events)
    text = summary.summarize(tmp_path)
    for name in ("alignment_vs_step.png", "conflict_vs_step.png"):
        assert (tmp_path / name).stat().st_size > 1000
        assert f"({name})" in text

    rows = {r["balancer"]: r for r in read_csv(tmp_path / "summary.csv")}
    for balancer in ("ema", "gradnorm"):
        row = rows[balancer]
        for column, values in (("final_align_score", ALIGN), ("final_conflict_fraction", CONFLICT)):
            finals = [values[balancer, seed][-1] for seed in range(2)]
            assert float(row[f"{column}_mean"]) == pytest.approx(statistics.fmean(finals))
            assert float(row[f"{column}_std"]) == pytest.approx(statistics.stdev(finals))
    none = rows["none"]
    assert none["final_align_score_mean"] == none["final_conflict_fraction_std"] == ""
    header = next(line for line in text.splitlines() if line.startswith("|"))
    assert header.endswith("| align score (final) | conflict fraction (final) |")
    md = {r[0]: r for r in table_rows(text)}
    assert md["ema"][-2:] == ["0.400 ± 0.141", "0.167 ± 0.236"]
    assert md["gradnorm"][-2:] == ["0.050 ± 0.212", "0.833 ± 0.236"]
    assert md["none"][-2:] == ["–", "–"]
    assert "`align/score`: not logged by `balancer=none`; left out of alignment_vs_step.png" in text
    assert "`grad/conflict_fraction`: not logged by `balancer=none`" in text

    # the curves behind the plots: mean and min..max band over the seeds at each step
    groups = {g.choices["balancer"]: g for g in summary.group_runs(summary.find_runs(tmp_path))}
    scalars = {
        r.path: summary.load_scalars(r.path, summary.SCALAR_PREFIXES)
        for g in groups.values()
        for r in g.runs
    }
    assert "align/pde" not in scalars[groups["ema"].runs[0].path]
    band = summary_plots.aggregate(
        summary_plots.seed_curves(groups["gradnorm"], scalars, "align/score")
    )
    assert band.x.tolist() == [10, 20, 30] and band.count.tolist() == [2, 2, 2]
    assert band.mean == pytest.approx([-0.4, -0.1, 0.05])
    assert band.lo == pytest.approx([-0.5, -0.2, -0.1]) and band.hi == pytest.approx([-0.3, 0, 0.2])
    seeds = zip(ALIGN["gradnorm", 0], ALIGN["gradnorm", 1])
    assert band.std == pytest.approx([statistics.stdev(pair) for pair in seeds])
    band = summary_plots.aggregate(
        summary_plots.seed_curves(groups["ema"], scalars, "grad/conflict_fraction")
    )
    assert band.mean == pytest.approx([5 / 6, 0.5, 1 / 6])
    assert summary_plots.seed_curves(groups["none"], scalars, "align/score") == []

    # tables only: the same columns, no plots
    for name in ("alignment_vs_step.png", "conflict_vs_step.png"):
        (tmp_path / name).unlink()
    text = summary.summarize(tmp_path, plots=False)
    assert not (tmp_path / "alignment_vs_step.png").exists()
    ema = read_csv(tmp_path / "summary.csv")[0]
    assert float(ema["final_align_score_mean"]) == pytest.approx(0.4)
    assert "`align/score`: not logged by `balancer=none`" in text


def test_mean_std_ignores_non_finite():
    mean, std = summary.mean_std([1.0, 3.0, float("nan"), None])
    assert (mean, std) == (2.0, pytest.approx(math.sqrt(2)))
    assert all(math.isnan(x) for x in summary.mean_std([]))


def test_factor_effects_from_matched_pairs(tmp_path):
    """Two-level factors, ratios within a seed and every other choice, per optimizer too.

    ema halves the error under adam and leaves it under ssbroyden; rar cuts it tenfold
    everywhere; seeds scale every error alike (so the pairs cancel them)."""
    from pinn_exp.summary_effects import factor_effects, two_level_factors

    for optim in ("adam", "ssbroyden"):
        for balancer in ("none", "ema"):
            for sampler in ("uniform", "rar"):
                for seed in (0, 1):
                    error = (1.0 if optim == "adam" else 1e-3) * (seed + 1)
                    error *= 0.5 if (balancer == "ema" and optim == "adam") else 1.0
                    error *= 0.1 if sampler == "rar" else 1.0
                    overrides = [f"optim={optim}", f"balancer={balancer}", f"sampler={sampler}"]
                    make_run(tmp_path, [*overrides, f"seed={seed}"], ok(error))
    # one unmatched run: a diverged partner drops its pair
    make_run(tmp_path, ["optim=adam", "balancer=ema", "sampler=rar", "seed=2"], ok(0.1))
    diverged = {"status": "diverged", "steps": 3, "wall_time_s": 1.0, "step_time_ms": 1.0}
    make_run(tmp_path, ["optim=adam", "balancer=none", "sampler=rar", "seed=2"], diverged)
    # peers in the same study folder set none of the factors: they join no pair, hide no factor
    for peer, seed in [("lra", 0), ("lra", 1), ("relobralo", 0), ("upgrad", 0)]:
        make_run(tmp_path, [f"peer={peer}", f"seed={seed}"], ok(0.3))
    groups = summary.group_runs(summary.find_runs(tmp_path))
    assert two_level_factors(groups) == {
        "optim": ("adam", "ssbroyden"),
        "balancer": ("none", "ema"),
        "sampler": ("uniform", "rar"),
    }
    effects = {(e.factor, e.stratum): e for e in factor_effects(groups, "rel_l2", by="optim")}
    assert ("optim", "") in effects and ("optim", "optim=adam") not in effects
    # ssbroyden / adam: 1e-3 where ema is off, 2e-3 where it halves adam's error
    assert effects[("optim", "")].geometric_mean == pytest.approx(math.sqrt(2) * 1e-3)
    ema = effects[("balancer", "")]
    assert len(ema.ratios) == 8 and ema.improved == 4
    assert ema.geometric_mean == pytest.approx(math.sqrt(0.5))
    assert effects[("balancer", "optim=adam")].geometric_mean == pytest.approx(0.5)
    assert effects[("balancer", "optim=ssbroyden")].geometric_mean == pytest.approx(1.0)
    rar = effects[("sampler", "optim=ssbroyden")]
    assert rar.geometric_mean == pytest.approx(0.1) and rar.improved == len(rar.ratios) == 4

    text = summary.summarize(tmp_path, plots=False)
    assert "Factor effects on rel_l2" in text
    rows = {(r[0], r[1]): r for r in table_rows(text, table=1)}
    assert rows[("balancer: none -> ema", "optim=adam")][2:4] == ["4", "0.5"]
    assert rows[("sampler: uniform -> rar", "all")][5] == "8/8"
    # the main table carries the steps reached (budgeted runs differ in them)
    assert table_rows(text)[0][-1] == "10.0"
