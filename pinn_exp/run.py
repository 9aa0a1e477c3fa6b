"""``build(cfg)`` turns a composed config into parts; ``train(cfg)`` is the only training loop.

This is the one place that reads the config object: everything below takes plain arguments.
"""

from __future__ import annotations

import json
import logging
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
from tqdm.contrib.logging import logging_redirect_tqdm

from pinn_exp import checkpoint
from pinn_exp.config import ConfigError, validate
from pinn_exp.gradients import conflict_diagnostics, per_term_gradients, write_direction
from pinn_exp.logging import RunLogger, cosine_heatmap, points_figure
from pinn_exp.phases import flatten
from pinn_exp.problems.base import Problem
from pinn_exp.rundir import prepare

log = logging.getLogger(__name__)


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
    phases = parts.schedule.phases(list(model.parameters()), unknown_params, cfg.steps)
    refresh = getattr(parts.schedule.quasi_newton, "refresh_weights", False)
    total_steps = cfg.steps
    # A wall-time budget (training time, evaluation excluded) compares optimizers whose steps
    # cost different amounts; `steps` stays an upper bound.
    budget = cfg.get("time_budget_s")

    # --- resume ---------------------------------------------------------------------------
    step, elapsed, step_times, weights = 0, 0.0, [], None
    ckpt_path = run_dir / "checkpoint.pt"
    if resuming and ckpt_path.is_file():
        state = checkpoint.load(ckpt_path)
        model.load_state_dict(state["model"])
        problem.unknowns.load_state_dict(state["unknowns"])
        for (_, phase), phase_state in zip(phases, state["phases"]):
            phase.load_state_dict(phase_state)
        sampler.load_state_dict(state["sampler"])
        balancer.load_state_dict(state["balancer"])
        surgery.load_state_dict(state["surgery"])
        generator.set_state(state["generator"])
        step, elapsed, step_times = state["step"], state["elapsed"], state["step_times"]
        weights = state["weights"]
        log.info("resuming %s at step %d", run_dir, step)

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
                "phases": [phase.state_dict() for _, phase in phases],
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
    out_of_time = budget is not None and elapsed >= budget
    with logging_redirect_tqdm():
        while step < total_steps and not out_of_time:
            t0 = time.perf_counter()
            phase = [p for first, p in phases if first <= step][-1]
            log_now = step % cfg.log_every == 0
            diagnose = cfg.diagnostics and log_now

            # --- 1. collocation points and 2. named loss terms ------------------------------
            # A quasi-Newton phase evaluates the terms itself, along its line search; here they
            # are needed only for Adam, for the diagnostics, or to set the weights it will use.
            x = sampler.points()
            grads = None
            if phase.takes_direction or diagnose or weights is None:
                terms = problem.losses(model, x)
                if names is None:
                    names = list(terms)
                    residual_mask = torch.tensor([n in problem.residual_terms for n in names])
                losses = torch.stack(list(terms.values()))
                if not torch.isfinite(losses).all():
                    status, message = "diverged", _diverged(names, losses, step)
                    break

                # --- 3./4. per-term gradients only when a module (or a diagnostic) needs them
                needs_matrix = balancer.needs_gradients or surgery.needs_gradients
                if needs_matrix or diagnose:
                    grads = per_term_gradients(list(terms.values()), params)
                if phase.takes_direction or weights is None:
                    weights = balancer.weights(
                        step, losses.detach(), grads, residual_mask, generator=generator
                    )
            before = flatten(params) if grads is not None and log_now else None

            # --- 5. the phase's update --------------------------------------------------------
            if phase.takes_direction:
                phase.zero_grad()
                if needs_matrix:
                    write_direction(params, surgery.combine(grads, weights.to(grads), generator))
                else:
                    # The fast path: one backward of the weighted sum, no K x P matrix.
                    (weights.to(losses) * losses).sum().backward()
                phase.step()
            else:
                losses = phase.step(lambda x=x: problem.losses(model, x), weights)
                if not torch.isfinite(losses).all():
                    status, message = "diverged", _diverged(names, losses, step)
                    break

            # --- 6. sampler update, logging, evaluation, checkpoint -------------------------
            step += 1
            if sampler.due(step):
                sampler.update(lambda pts: problem.pointwise_residual(model, pts))
                if not phase.takes_direction:
                    phase.objective_changed()
                    if refresh:  # the balancer's weights, from the new points
                        fresh = list(problem.losses(model, sampler.points()).values())
                        g = per_term_gradients(fresh, params) if balancer.needs_gradients else None
                        values = torch.stack(fresh).detach()
                        weights = balancer.weights(
                            step, values, g, residual_mask, generator=generator
                        )
            dt = time.perf_counter() - t0
            step_times.append((phase.name, dt))
            elapsed += dt
            out_of_time = budget is not None and elapsed >= budget
            last = step == total_steps or out_of_time

            if log_now:
                scalars = {f"loss/{n}": v for n, v in zip(names, losses.tolist())}
                scalars["loss/total"] = float((weights.to(losses) * losses.detach()).sum())
                scalars |= {f"weight/{n}": float(w) for n, w in zip(names, weights.tolist())}
                scalars |= phase.scalars()
                scalars |= {f"unknown/{k}": v for k, v in problem.unknown_values().items()}
                if grads is not None:
                    scalars |= _gradient_scalars(grads, names, phase, flatten(params) - before)
                    if (step - 1) % cfg.eval_every == 0:  # the log step starting each eval period
                        cos = conflict_diagnostics(grads)["cosine"]
                        logger.figure("grad/cosines", cosine_heatmap(np.asarray(cos), names), step)
                logger.scalars(scalars, step)
                shown = "-" if math.isnan(last_rel_l2) else f"{last_rel_l2:.3e}"  # before eval 1
                progress.set_postfix(
                    phase=phase.name, loss=f"{scalars['loss/total']:.3e}", rel_l2=shown
                )

            if step % cfg.eval_every == 0 or last:
                evaluation = problem.evaluate(model)
                last_rel_l2 = evaluation.metrics["rel_l2"]
                logger.scalars(evaluation.metrics, step, prefix="eval/")
                logger.scalars({"eval/wall_time_s": elapsed}, step)
                logger.figure("eval/fields", problem.figure(evaluation), step)
                logger.figure(
                    "eval/collocation",
                    points_figure(sampler.points().detach().cpu().numpy(), problem.point_labels),
                    step,
                )
                log.info(
                    "step %d/%d (%s): loss %.3e, rel_l2 %.3e, %.1f steps/s, %.0f s",
                    step,
                    total_steps,
                    phase.name,
                    float(losses.detach().sum()),
                    last_rel_l2,
                    len(step_times) / elapsed,
                    elapsed,
                )
            if step % cfg.checkpoint_every == 0 or last:
                save_checkpoint()
            progress.update(1)
    if not math.isnan(last_rel_l2):  # the bar's last word is the final error, not a log step's
        progress.set_postfix(rel_l2=f"{last_rel_l2:.3e}", refresh=False)
    progress.close()

    # --- outputs ---------------------------------------------------------------------------
    # A diverged model is not evaluated; a completed one was at its last step, unless a resumed
    # run found nothing left to do.
    if status != "completed":
        log.error("diverged: %s", message)
        evaluation = None
    elif evaluation is None:
        evaluation = problem.evaluate(model)
    metrics = {
        "status": status,
        "steps": step,
        "stopped_by": "time_budget" if out_of_time and status == "completed" else "steps",
        "wall_time_s": elapsed,
        "step_time_ms": _median_ms([dt for _, dt in step_times]),
    }
    # Per phase: an Adam step and a quasi-Newton iteration (line search included) differ in cost.
    for _, phase in phases:
        metrics[f"step_time_ms_{phase.name}"] = _median_ms(
            [dt for name, dt in step_times if name == phase.name]
        )
        metrics |= phase.summary()
    if message:
        metrics["message"] = message
    if evaluation is not None:
        metrics |= evaluation.metrics
        _write_prediction(run_dir / "prediction.h5", evaluation, problem.artifacts(), cfg)
    metrics |= problem.unknown_metrics()
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.close()
    if evaluation is not None:
        log.info(
            "final rel_l2 = %.4e after %d steps (%.1f s); outputs in %s",
            metrics["rel_l2"],
            step,
            elapsed,
            run_dir,
        )
    return metrics


def _median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times) if times else float("nan")


def _diverged(names: list[str] | None, losses: torch.Tensor, step: int) -> str:
    bad = [n for n, v in zip(names or [], losses.tolist()) if not math.isfinite(v)]
    return f"non-finite loss term(s) {bad} at step {step}; last good checkpoint kept"


def _gradient_scalars(grads: torch.Tensor, names: list[str], phase, update: torch.Tensor) -> dict:
    """Norms, pairwise cosines and conflicts of the term gradients (Type I/II), and how they
    align with the update actually taken.

    ``align/<term>`` is the cosine between the term's negative gradient and the update (> 0: the
    step decreases that term to first order). ``align/score`` is the gradient-alignment score of
    Wang et al. 2025 ("Gradient alignment in physics-informed neural networks: a second-order
    optimization perspective"), ``2 ||mean_i u_i||^2 - 1`` over the unit vectors ``u_i`` of the
    terms' preconditioned directions (Adam's diagonal, or the quasi-Newton H): 1 when all terms
    would move the parameters the same way, -1 for two opposite terms.
    """
    diag = conflict_diagnostics(grads)
    out = {f"grad_norm/{n}": float(g) for n, g in zip(names, diag["norms"])}
    out["grad/norm_ratio"] = float(diag["norm_ratio"])
    out["grad/conflict_fraction"] = float(diag["conflict_fraction"])
    cos = np.asarray(diag["cosine"])
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            out[f"cosine/{names[i]}__{names[j]}"] = float(cos[i, j])
    unit = update / update.norm().clamp_min(1e-300)
    norms = grads.norm(dim=1).clamp_min(1e-300)
    for n, c in zip(names, (-(grads @ unit) / norms).tolist()):
        out[f"align/{n}"] = c
    directions = phase.precondition(grads)
    u = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-300)
    out["align/score"] = float(2 * u.mean(0).square().sum() - 1)
    return out


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
