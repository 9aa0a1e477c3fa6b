"""``build(cfg)`` turns a composed config into parts; ``train(cfg)`` is the only training loop.

This is the one place that reads the config object: everything below takes plain arguments.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pinn_exp import checkpoint
from pinn_exp.config import ConfigError, validate
from pinn_exp.gradients import conflict_diagnostics, per_term_gradients, write_direction
from pinn_exp.logging import RunLogger, cosine_heatmap, points_figure
from pinn_exp.problems.base import Problem
from pinn_exp.rundir import prepare


@dataclass
class Parts:
    generator: torch.Generator
    problem: Problem
    model: torch.nn.Module
    sampler: object
    balancer: object
    surgery: object
    schedule: object
    device: torch.device
    dtype: torch.dtype


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' is not allowed here: no CUDA device; use cpu or auto")
    return torch.device(name)


def build(cfg: DictConfig) -> Parts:
    """Instantiate every part from the config; the problem supplies the model's sizes."""
    validate(cfg)
    device, dtype = _device(cfg.device), getattr(torch, cfg.dtype)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    problem = instantiate(
        cfg.pde, generator=generator, data_dir=cfg.data_dir, dtype=dtype, device=device
    )
    model = instantiate(cfg.model)(
        in_dim=problem.n_features, out_dim=problem.out_dim, generator=generator, dtype=dtype
    ).to(device)
    sampler = instantiate(cfg.sampler)(domain=problem.sample_domain, generator=generator)
    return Parts(
        generator=generator,
        problem=problem,
        model=model,
        sampler=sampler,
        balancer=instantiate(cfg.balancer),
        surgery=instantiate(cfg.surgery),
        schedule=instantiate(cfg.optim),
        device=device,
        dtype=dtype,
    )


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict:
    """Train one PINN; write metrics.json, prediction.h5, checkpoint.pt and TensorBoard events.

    ``overrides`` are the command line's ``key=value`` overrides; a resumed run checks them.
    """
    cfg, run_dir, resuming = prepare(cfg, overrides)
    parts = build(cfg)
    problem, model, sampler = parts.problem, parts.model, parts.sampler
    balancer, surgery, generator = parts.balancer, parts.surgery, parts.generator
    unknown_params = list(problem.unknowns.parameters())
    params = [*model.parameters(), *unknown_params]
    optimizer, scheduler = parts.schedule.adam(list(model.parameters()), unknown_params)
    lbfgs_steps = parts.schedule.lbfgs_steps
    lbfgs = parts.schedule.lbfgs(params) if lbfgs_steps else None
    total_steps = cfg.steps + lbfgs_steps

    # --- resume ---------------------------------------------------------------------------
    step, elapsed, step_times, weights = 0, 0.0, [], None
    ckpt_path = run_dir / "checkpoint.pt"
    if resuming and ckpt_path.is_file():
        state = checkpoint.load(ckpt_path)
        model.load_state_dict(state["model"])
        problem.unknowns.load_state_dict(state["unknowns"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if lbfgs is not None:
            lbfgs.load_state_dict(state["lbfgs"])
        sampler.load_state_dict(state["sampler"])
        balancer.load_state_dict(state["balancer"])
        surgery.load_state_dict(state["surgery"])
        generator.set_state(state["generator"])
        step, elapsed, step_times = state["step"], state["elapsed"], state["step_times"]
        weights = state["weights"]
        print(f"resuming {run_dir} at step {step}", file=sys.stderr)

    logger = RunLogger(run_dir)
    logger.text("config", f"```\n{OmegaConf.to_yaml(cfg)}\n```")
    names: list[str] | None = None
    residual_mask = None
    status, message, evaluation = "completed", "", None

    def save_checkpoint() -> None:
        checkpoint.save_atomic(
            {
                "model": model.state_dict(),
                "unknowns": problem.unknowns.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "lbfgs": lbfgs.state_dict() if lbfgs is not None else None,
                "sampler": sampler.state_dict(),
                "balancer": balancer.state_dict(),
                "surgery": surgery.state_dict(),
                "generator": generator.get_state(),
                "step": step,
                "elapsed": elapsed,
                "step_times": step_times,
                "weights": weights,
            },
            ckpt_path,
        )

    progress = tqdm(
        total=total_steps,
        initial=step,
        disable=not cfg.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    last_rel_l2 = float("nan")
    while step < total_steps:
        t0 = time.perf_counter()
        in_lbfgs = step >= cfg.steps
        log_now = step % cfg.log_every == 0

        # --- 1. collocation points and 2. named loss terms ---------------------------------
        x = sampler.points()
        terms = problem.losses(model, x)
        if names is None:
            names = list(terms)
            residual_mask = torch.tensor([n in problem.residual_terms for n in names])
        losses = torch.stack(list(terms.values()))
        if not torch.isfinite(losses).all():
            status = "diverged"
            bad = [n for n, v in zip(names, losses.tolist()) if not math.isfinite(v)]
            message = f"non-finite loss term(s) {bad} at step {step}; last good checkpoint kept"
            print(f"diverged: {message}", file=sys.stderr)
            break

        # --- 3./4. per-term gradients only when a module (or a diagnostic) needs them --------
        needs_matrix = balancer.needs_gradients or surgery.needs_gradients
        diagnose = cfg.diagnostics and log_now
        grads = None
        if (needs_matrix or diagnose) and not in_lbfgs:
            grads = per_term_gradients(list(terms.values()), params)
        if not in_lbfgs or weights is None:
            weights = balancer.weights(
                step, losses.detach(), grads, residual_mask, generator=generator
            )
        if in_lbfgs:
            _lbfgs_step(lbfgs, problem, model, x, weights)
        else:
            optimizer.zero_grad(set_to_none=True)
            if needs_matrix:
                write_direction(params, surgery.combine(grads, weights.to(grads), generator))
            else:
                # The fast path: one backward of the weighted sum, no K x P matrix.
                (weights.to(losses) * losses).sum().backward()
            optimizer.step()
            scheduler.step()

        # --- 6. sampler update, logging, evaluation, checkpoint -----------------------------
        step += 1
        if sampler.due(step):
            sampler.update(lambda pts: problem.pointwise_residual(model, pts))
        dt = time.perf_counter() - t0
        step_times.append(dt)
        elapsed += dt

        if log_now:
            scalars = {f"loss/{n}": v for n, v in zip(names, losses.tolist())}
            scalars["loss/total"] = float((weights.to(losses) * losses.detach()).sum())
            scalars |= {f"weight/{n}": float(w) for n, w in zip(names, weights.tolist())}
            scalars["lr"] = optimizer.param_groups[0]["lr"]
            scalars |= {f"unknown/{k}": v for k, v in problem.unknown_values().items()}
            if grads is not None:
                diag = conflict_diagnostics(grads)
                scalars |= {f"grad_norm/{n}": float(g) for n, g in zip(names, diag["norms"])}
                scalars["grad/norm_ratio"] = float(diag["norm_ratio"])
                scalars["grad/conflict_fraction"] = float(diag["conflict_fraction"])
                cos = np.asarray(diag["cosine"])
                for i in range(len(names)):
                    for j in range(i + 1, len(names)):
                        scalars[f"cosine/{names[i]}__{names[j]}"] = float(cos[i, j])
                if (step - 1) % cfg.eval_every == 0:  # the log step that starts each eval period
                    logger.figure("grad/cosines", cosine_heatmap(cos, names), step)
            logger.scalars(scalars, step)
            shown = "-" if math.isnan(last_rel_l2) else f"{last_rel_l2:.3e}"  # before 1st eval
            progress.set_postfix(loss=f"{scalars['loss/total']:.3e}", rel_l2=shown)

        if step % cfg.eval_every == 0 or step == total_steps:
            evaluation = problem.evaluate(model)
            last_rel_l2 = evaluation.metrics["rel_l2"]
            logger.scalars(evaluation.metrics, step, prefix="eval/")
            logger.figure("eval/fields", problem.figure(evaluation), step)
            logger.figure(
                "eval/collocation",
                points_figure(sampler.points().detach().cpu().numpy(), problem.point_labels),
                step,
            )
            tqdm.write(
                f"step {step}/{total_steps}: loss {float(losses.detach().sum()):.3e}, "
                f"rel_l2 {last_rel_l2:.3e}, {len(step_times) / elapsed:.1f} steps/s",
                file=sys.stderr,
            )
        if step % cfg.checkpoint_every == 0 or step == total_steps:
            save_checkpoint()
        progress.update(1)
    progress.close()

    # --- outputs ---------------------------------------------------------------------------
    # A diverged model is not evaluated; a completed one was at its last step, unless a resumed
    # run found nothing left to do.
    if status != "completed":
        evaluation = None
    elif evaluation is None:
        evaluation = problem.evaluate(model)
    metrics = {
        "status": status,
        "steps": step,
        "wall_time_s": elapsed,
        "step_time_ms": 1e3 * statistics.median(step_times) if step_times else float("nan"),
    }
    if message:
        metrics["message"] = message
    if evaluation is not None:
        metrics |= evaluation.metrics
        _write_prediction(run_dir / "prediction.h5", evaluation, problem.artifacts(), cfg)
    metrics |= problem.unknown_metrics()
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.close()
    if evaluation is not None:
        print(
            f"final rel_l2 = {metrics['rel_l2']:.4e} after {step} steps "
            f"({elapsed:.1f} s); outputs in {run_dir}",
            file=sys.stderr,
        )
    return metrics


def _lbfgs_step(lbfgs, problem: Problem, model, x, weights) -> None:
    """One L-BFGS iteration on the weighted sum, weights frozen at the end of Adam.

    L-BFGS needs a loss to line-search, so surgery (which has no loss) is off in this phase.
    """

    def closure():
        lbfgs.zero_grad()
        terms = torch.stack(list(problem.losses(model, x).values()))
        loss = (weights.to(terms) * terms).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)


def _write_prediction(path: Path, evaluation, artifacts: dict, cfg: DictConfig) -> None:
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("coords", data=evaluation.coords)
        for name in evaluation.prediction:
            f.create_dataset(f"prediction/{name}", data=evaluation.prediction[name])
            f.create_dataset(f"reference/{name}", data=evaluation.reference[name])
        for name, value in evaluation.extra.items():
            f.create_dataset(f"grid/{name}", data=value)
        for name, value in artifacts.items():
            f.create_dataset(name, data=value)
        f.attrs["config"] = OmegaConf.to_yaml(cfg)
        for key, value in evaluation.metrics.items():
            f.attrs[key] = value
    tmp.replace(path)
