"""Where the GAN's fit time goes on the tabular suite, and what stopping earlier would score.

    nice -n 10 python -m benchmarks.ganfit_probe --out benchmarks/results/issue13_ganfit_probe.json
    nice -n 10 python -m benchmarks.ganfit_probe --step-ab --out ...step_ab.json

Per set (full protocol of ``benchmarks.devpool``, seed 0, one torch thread): one GAN fit
of all its epochs that keeps a copy of the weights after every epoch, its held-out
monitor per epoch, CPU s of the training steps and of the rest of the fit, and the test
AUROC / AUPRC of the model the fit would have kept had it stopped after epoch ``e``
(the best-monitor weights of epochs 1..e, then the same post-training statistics).
Training does not depend on when it stops (same seeded batches and noise up to epoch e),
so each of these equals a fit that stops there; this reads the trade-off off one fit.
``--step-ab``: CPU per training step of the one-pass step against the two-pass step it
replaced (``two_pass_step``), interleaved in one process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from benchmarks.devpool import SHARED, capped_split
from benchmarks.tabular import TARGET_FPR
from detectors import GANDetector, metrics
from detectors.gan import _bce

CAPS = {"max_train": 0, "max_test_normals": 0, "max_test_anomalies": 0}


def two_pass_step(self: GANDetector, xb: torch.Tensor, epoch: int) -> dict[str, float]:
    """The GAN's training step before issue 13's one-pass step (the reference of its test
    and of ``--step-ab``): E and G under no_grad for the discriminators, then all again
    (after the discriminator update) with every network's gradients."""
    net = self.model_
    z = torch.randn(xb.shape[0], int(self.latent_dim), device=xb.device)
    n = xb.shape[0]
    real_fake = torch.cat([torch.ones(n), torch.zeros(n)])
    fake_real = 1.0 - real_fake
    bce = F.binary_cross_entropy_with_logits
    with torch.no_grad():
        z_hat, x_fake = net.encoder(xb), net.generator(z)
        x_rec, z_rec = net.generator(z_hat), net.encoder(x_fake)
    with parametrize.cached():
        d_loss = (
            bce(net.d_xz(torch.cat([xb, x_fake]), torch.cat([z_hat, z])), real_fake)
            + bce(net.d_xx(torch.cat([xb, xb]), torch.cat([xb, x_rec])), real_fake)
            + bce(net.d_zz(torch.cat([z, z]), torch.cat([z, z_rec])), real_fake)
        )
        self._opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
    self._opt_d.step()
    z_hat, x_fake = net.encoder(xb), net.generator(z)
    x_rec, z_rec = net.generator(z_hat), net.encoder(x_fake)
    with parametrize.cached():
        adv = (
            bce(net.d_xz(torch.cat([xb, x_fake]), torch.cat([z_hat, z])), fake_real)
            + 0.5 * _bce(net.d_xx(xb, x_rec), 1.0)
            + 0.5 * _bce(net.d_zz(z, z_rec), 1.0)
        )
    rec = (xb - x_rec).pow(2).sum(dim=1).mean()
    eg_loss = adv + float(self.reconstruction_weight) * rec
    self._opt_eg.zero_grad(set_to_none=True)
    eg_loss.backward()
    nn.utils.clip_grad_norm_(net.eg_parameters(), 10.0)
    self._opt_eg.step()
    return {
        k: float(v.detach()) for k, v in (("train_loss", eg_loss), ("d_loss", d_loss), ("rec", rec))
    }


class _SnapshotGAN(GANDetector):
    """A GAN that keeps its weights after every epoch and the fit's tensors."""

    def _train_loop(self, x_train, x_val, on_epoch, *, x_monitor=None):  # type: ignore[override]
        self._probe = {"x_val": x_val, "x_stats": x_monitor, "snapshots": [], "step_cpu": 0.0}
        cpu = time.process_time()
        super()._train_loop(x_train, x_val, on_epoch, x_monitor=x_monitor)
        self._probe["loop_cpu"] = time.process_time() - cpu

    def _train_batch(self, xb, epoch):  # type: ignore[override]
        cpu = time.process_time()
        out = super()._train_batch(xb, epoch)
        self._probe["step_cpu"] += time.process_time() - cpu
        return out

    def _validation_loss(self, xv, epoch):  # type: ignore[override]
        val = super()._validation_loss(xv, epoch)
        state = {k: v.detach().clone() for k, v in self.model_.state_dict().items()}
        self._probe["snapshots"].append(state)
        return val


def stopped_at(det: _SnapshotGAN, epoch: int, X_test: np.ndarray) -> np.ndarray:
    """Test scores of the model a fit stopped after ``epoch`` would keep."""
    vals = [h["val_loss"] for h in det.history_[:epoch]]
    best = _best_epoch(vals)
    det.model_.load_state_dict(det._probe["snapshots"][best - 1], strict=False)
    det.model_.eval()
    det.__dict__.pop("error_variance_", None)
    with torch.no_grad():
        det._after_fit(det._probe["x_stats"], det._probe["x_val"])
    return det.decision_function(X_test), best


def _best_epoch(vals: list[float]) -> int:
    """The epoch ``BaseDeepDetector._train_loop`` keeps (relative min-delta 1e-4)."""
    best, best_epoch = float("inf"), 0
    for i, v in enumerate(vals, start=1):
        tol = 1e-4 * abs(best) if np.isfinite(best) else 0.0
        if v < best - tol:
            best, best_epoch = v, i
    return best_epoch


def probe(name: str, epochs: list[int], params: dict) -> dict:
    X_train, X_test, y_test = capped_split(name, 0, CAPS)
    torch.manual_seed(0)
    det = _SnapshotGAN(seed=0, target_fpr=TARGET_FPR, patience=None, **params)
    cpu, wall = time.process_time(), time.perf_counter()
    det.fit(X_train)
    fit_cpu, fit_wall = time.process_time() - cpu, time.perf_counter() - wall
    n_epochs = len(det.history_)
    steps = sum(1 for _ in range(0, det.fit_info_["rows_per_epoch"], det.batch_size))
    out = {
        "dataset": name,
        "n_train": int(len(X_train)),
        "train_rows": det.fit_info_["train_rows"],
        "rows_per_epoch": det.fit_info_["rows_per_epoch"],
        "steps_per_epoch": steps,
        "epochs": n_epochs,
        "best_epoch": det.best_epoch_,
        "fit_cpu_s": fit_cpu,
        "fit_wall_s": fit_wall,
        "loop_cpu_s": det._probe["loop_cpu"],
        "step_cpu_s": det._probe["step_cpu"],
        "cpu_ms_per_step": 1000 * det._probe["step_cpu"] / (steps * n_epochs),
        "val_loss": [h["val_loss"] for h in det.history_],
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "stopped": [],
    }
    for e in epochs:
        if e > n_epochs:
            continue
        scores, best = stopped_at(det, e, X_test)
        out["stopped"].append(
            {
                "after_epoch": e,
                "kept_epoch": best,
                "auroc": float(metrics.auroc(y_test, scores)),
                "auprc": float(metrics.auprc(y_test, scores)),
            }
        )
        print(
            f"  {name} stop@{e} (kept {best}): AUROC {out['stopped'][-1]['auroc']:.4f}", flush=True
        )
    return out


def step_ab(name: str, blocks: int = 16, steps: int = 20) -> dict:
    """CPU ms per training step, two-pass (before) against one-pass (after), in one process:
    blocks of ``steps`` steps alternate between them on the same model and batches drawn
    from the set's training rows, so that the other processes' load hits both alike."""
    X_train, _, _ = capped_split(name, 0, CAPS)
    det = GANDetector(seed=0, epochs=1, patience=None, knn_views=()).fit(X_train)
    x = det._to_tensor(X_train)
    det.model_.train()
    det._configure_optimizers()
    variants = {"before": two_pass_step, "after": GANDetector._train_batch}
    ms: dict[str, list[float]] = {k: [] for k in variants}
    gen = torch.Generator().manual_seed(0)
    for block in range(blocks):
        order = list(variants) if block % 2 == 0 else list(reversed(variants))
        for key in order:
            cpu = time.process_time()
            for _ in range(steps):
                idx = torch.randint(0, x.shape[0], (int(det.batch_size),), generator=gen)
                variants[key](det, x[idx], 1)
            ms[key].append(1000 * (time.process_time() - cpu) / steps)
    before, after = float(np.median(ms["before"])), float(np.median(ms["after"]))
    return {
        "dataset": name,
        "before_ms_per_step": before,
        "after_ms_per_step": after,
        "after_over_before": after / before,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=SHARED)
    parser.add_argument(
        "--epochs", default="1,2,3,4,5,6,8,10,12,15,20,25,30,40,50,60", help="stop points"
    )
    parser.add_argument("--gan", default="{}", help="JSON overrides for GANDetector")
    parser.add_argument("--step-ab", action="store_true", help="only the step A/B")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.step_ab:
        ab = [step_ab(name) for name in args.datasets]
        for r in ab:
            print(
                f"{r['dataset']}: before {r['before_ms_per_step']:.2f} ms/step, after "
                f"{r['after_ms_per_step']:.2f} ({r['after_over_before']:.3f}), load {r['loadavg']}"
            )
        meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "torch_threads": 1}
        Path(args.out).write_text(json.dumps({"meta": meta, "step_ab": ab}, indent=1))
        return 0
    epochs = [int(e) for e in args.epochs.split(",")]
    rows = []
    for name in args.datasets:
        rows.append(probe(name, epochs, json.loads(args.gan)))
        r = rows[-1]
        print(
            f"{name}: {r['epochs']} epochs x {r['steps_per_epoch']} steps, best {r['best_epoch']}, "
            f"fit CPU {r['fit_cpu_s']:.1f}s (steps {r['step_cpu_s']:.1f}s, "
            f"{r['cpu_ms_per_step']:.1f} ms/step), load {r['loadavg']}",
            flush=True,
        )
    report = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "caps": CAPS,
            "seed": 0,
            "params": json.loads(args.gan),
        },
        "results": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
