r"""Data-parallel training on ``torch.distributed`` (design: ``/work/shared/DISTRIBUTED.md``).

``torchrun --standalone --nproc-per-node=W -m neurolearn train ...`` starts ``W`` processes;
:func:`init_from_env` joins them into one process group (gloo on CPU, nccl on GPU) from
torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``).

**What makes ``W`` ranks × ``B/W`` equal one process × ``B``** (up to the order of float sums):

- *Data*: every rank walks the same global batch order (the trainer's, seeded by
  ``(seed, epoch)``) and encodes the whole global batch with the same generator, then keeps its
  contiguous shard ``[lo, hi)`` (:func:`shard_range`). The shards, concatenated in rank order,
  are the single-process batch.
- *Gradients and statistics*: a rule's gradient is a mean over its batch, so with ``n_r``
  samples on rank ``r`` and ``n = Σ_r n_r``, ``g = Σ_r (n_r/n) g_r``: :class:`GradSync` (the
  :class:`neurolearn.updates.Updater`'s ``synchronise`` hook) scales each rank's gradients by
  ``n_r/n``, packs them with the rule's statistics into **one** flat buffer, calls one
  ``all_reduce(SUM)`` and unpacks. (Plain DDP would not reduce gradients a rule writes into
  ``.grad`` by hand, and would not say so: DISTRIBUTED.md §1.2.)
- *Noise*: a rule's noise generator is seeded by ``(seed, epoch)`` on every rank; per-sample
  node noise is drawn for the whole global batch and each rank keeps its samples' rows, so the
  noise of global sample ``i`` at step ``s`` is a function of ``(seed, epoch, s, i)`` alone:
  the same whichever rank holds the sample, and the same as in one process (the single-process
  numbers do not change). :func:`keyed_generator` gives independent streams for other keys.
- *Scalar-only weight perturbation*: ``g = (1/(Kσ²)) Σ_k ΔL_k ξ_k`` depends on the data only
  through the ``K`` scalars ``ΔL_k``; each rank exchanges only those (``8K`` bytes, float64)
  and rebuilds every ``ξ_k`` from its key (:func:`wp_scalar_estimate`, and the trainer's ``wp``).
- *Decorrelation*: the decorrelated layers' clean inputs are gathered (:meth:`GradSync.gather`)
  so every rank makes the global batch's ``R`` update; ``R`` stays identical on all ranks.
- *Evaluation*: every rank evaluates its share of the test batches; the metric sums are
  all-reduced (:meth:`GradSync.sum_floats`).

Checkpoints are written by rank 0 alone (atomically), then all ranks wait at a barrier.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from neurolearn.errors import ConfigError, NeurolearnError

DEFAULT_TIMEOUT_S = 300.0


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (FNV-1a style; stable across runs, platforms and world sizes)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


def keyed_generator(*key: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by ``key`` (e.g. ``(seed, epoch, step, purpose, k)``): what it draws
    depends on the key alone, never on the rank or the world size."""
    return torch.Generator(device=device).manual_seed(mix_seed(*key))


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share ``[lo, hi)`` of ``n`` samples (sizes differ by at most one;
    the shards in rank order are ``0..n``)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class DistributedError(NeurolearnError):
    """A rank failed or the process group could not be formed."""


@dataclass
class Context:
    """This process's place in the group: ``rank`` of ``world``; ``owned``: this module created
    the group (and destroys it in :meth:`close`)."""

    rank: int = 0
    world: int = 1
    backend: str = ""
    owned: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = False


SINGLE = Context()


def backend_for(device: torch.device | str) -> str:
    """gloo for CPU tensors, nccl for CUDA ones."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def current() -> Context:
    """The process group this process is in (created by someone else), or the single-process context."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()), owned=False)
    return SINGLE


def init_from_env(device: torch.device | str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> Context:
    """Join the process group torchrun describes in the environment (``WORLD_SIZE > 1``), or
    return the single-process context. An existing group (tests, Ray) is used as it is."""
    if dist.is_available() and dist.is_initialized():
        return current()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    except Exception as exc:  # noqa: BLE001 - one clear line for any rendezvous failure
        raise DistributedError(f"could not join the process group (rank {os.environ.get('RANK')} of {world}, "
                               f"{backend}, {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}): "
                               f"{exc}") from exc
    return Context(dist.get_rank(), dist.get_world_size(), backend, owned=True)


def init_file_store(path: str, rank: int, world: int, backend: str = "gloo",
                    timeout_s: float = 60.0) -> Context:
    """Join a group through a file store (tests: no ports); ``path`` must not exist yet."""
    dist.init_process_group(backend, init_method=f"file://{path}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))
    return Context(rank, world, backend, owned=True)


def free_port() -> int:
    """A free TCP port on this host (for a local rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Traffic:
    """Counters of what was exchanged: payload bytes and collective calls."""

    bytes: int = 0
    collectives: int = 0

    def add(self, t: torch.Tensor) -> None:
        self.bytes += t.numel() * t.element_size()
        self.collectives += 1


@dataclass
class GradSync:
    """The update seam's ``synchronise`` hook for ``W`` data-parallel ranks (module docstring).

    Before each step the trainer sets ``weight = n_r / n`` (this rank's share of the global
    batch). :meth:`__call__` computes, in one ``all_reduce``,
    ``g ← Σ_r (n_r/n) g_r`` for every gradient and ``s ← Σ_r s_r`` for each statistic
    ``stats["sum"]`` (a float64 tensor a rule wants summed over ranks, replaced in place).
    With ``stats["scalar_update"] = ScalarUpdate(...)`` only that update's scalars travel
    (scalar-only weight perturbation) and the gradients are rebuilt from them.
    """

    ctx: Context
    weight: float = 1.0
    traffic: Traffic = field(default_factory=Traffic)

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        self.traffic.add(t)
        dist.all_reduce(t)
        return t

    def __call__(self, grads: list[torch.Tensor], stats: dict[str, Any]) -> None:
        if not self.ctx.active:
            return
        scalar = stats.get("scalar_update")
        extra = stats.get("sum")
        extras = [] if extra is None else [extra.reshape(-1).to(torch.float64)]
        if scalar is not None:
            buf = torch.cat([scalar.local_scalars().reshape(-1) * self.weight, *extras])
            self._all_reduce(buf)
            k = scalar.count
            scalar.rebuild(buf[:k])
            if extra is not None:
                extra.copy_(buf[k:].reshape(extra.shape).to(extra.dtype))
            return
        if not grads and not extras:
            return
        dtype = grads[0].dtype if grads else torch.float64
        for g in grads:  # float64 batch sums (train.exact_sums) travel in float64
            dtype = torch.promote_types(dtype, g.dtype)
        parts = [g.reshape(-1).to(dtype) * self.weight for g in grads]
        parts += [e.to(dtype) for e in extras]
        flat = torch.cat(parts) if parts else torch.zeros(0)
        self._all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        if extra is not None:
            extra.copy_(flat[offset:].reshape(extra.shape).to(extra.dtype))

    def sum_floats(self, values: Sequence[float]) -> list[float]:
        """``Σ_r values_r`` (float64), for metric sums."""
        if not self.ctx.active:
            return [float(v) for v in values]
        t = torch.tensor(list(values), dtype=torch.float64, device=self._comm_device())
        return [float(v) for v in self._all_reduce(t).cpu()]

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """``Σ_r t_r`` over the processes (a new float64 tensor; a rule's batch statistic)."""
        out = t.to(torch.float64, copy=True)
        if not self.ctx.active:
            return out
        dev = self._comm_device()
        return self._all_reduce(out.to(dev)).to(t.device)

    def gather(self, t: torch.Tensor, dim: int, sizes: Sequence[int]) -> torch.Tensor:
        """Concatenate every rank's ``t`` along ``dim`` in rank order (rank ``r`` holds ``sizes[r]``
        entries there): the global batch's tensor from the shards."""
        if not self.ctx.active:
            return t
        most = max(sizes)
        pad = list(t.shape)
        pad[dim] = most - t.shape[dim]
        local = torch.cat([t, t.new_zeros(pad)], dim) if pad[dim] else t.contiguous()
        parts = [torch.empty_like(local) for _ in range(self.ctx.world)]
        self.traffic.add(local)
        dist.all_gather(parts, local)
        return torch.cat([p.narrow(dim, 0, s) for p, s in zip(parts, sizes)], dim)

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.ctx.backend == "nccl" else torch.device("cpu")


@dataclass
class ScalarUpdate:
    """An update ``g_p = Σ_k s_k d_{k,p}`` that depends on the data only through the scalars
    ``s_k`` (weight perturbation: ``s_k = ΔL_k/(Kσ²)``, ``d_k = ξ_k``). ``scalars`` are this
    rank's (already means over its samples); ``directions()`` rebuilds the ``d_k`` (from seeds,
    identical on every rank); ``params`` get ``.grad = Σ_k s_k d_k``."""

    params: list[torch.Tensor]
    scalars: torch.Tensor  # [K] float64
    directions: Callable[[int], list[torch.Tensor]]

    @property
    def count(self) -> int:
        return int(self.scalars.numel())

    def local_scalars(self) -> torch.Tensor:
        return self.scalars.to(torch.float64)

    def rebuild(self, scalars: torch.Tensor) -> None:
        """Write ``.grad = Σ_k s_k d_k`` (k in order: the same float sums on every rank)."""
        self.scalars = scalars
        with torch.no_grad():
            for k in range(self.count):
                s = float(scalars[k])
                for p, d in zip(self.params, self.directions(k)):
                    if k == 0:
                        p.grad = d * s
                    else:
                        p.grad.add_(d * s)


def wp_scalar_estimate(model: torch.nn.Module, run_loss: Callable[[], torch.Tensor], params: list[torch.Tensor],
                       sigma: float, draws: int, key: Sequence[int], ctx: Context = SINGLE,
                       traffic: Traffic | None = None) -> torch.Tensor:
    r"""Weight perturbation with ``K = draws`` draws shared out over the ranks, exchanging only scalars.

    ``g = (1/(Kσ²)) Σ_k ΔL_k ξ_k`` with ``ξ_k ~ N(0, σ²)`` drawn from ``keyed_generator(*key, k)``
    and ``ΔL_k = L(θ + ξ_k) − L(θ)`` (``run_loss()``: the mean loss of the current weights).
    Rank ``r`` evaluates the ``k ≡ r (mod W)``, writes its ``ΔL_k`` into a zero ``K``-vector,
    one ``all_reduce`` (``8K`` bytes) completes it on every rank, and every rank regenerates all
    ``ξ_k`` and writes ``.grad``. Each perturbation is undone by restoring a saved copy (undoing
    by subtraction is not exact in floating point and lets the ranks drift apart). Returns the
    ``ΔL`` vector."""
    with torch.no_grad():
        saved = [p.detach().clone() for p in params]

        def xi(k: int) -> list[torch.Tensor]:
            gen = keyed_generator(*key, k)
            return [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) * sigma for p in params]

        base = float(run_loss())
        dl = torch.zeros(draws, dtype=torch.float64)
        for k in range(ctx.rank, draws, ctx.world):
            for p, e in zip(params, xi(k)):
                p.add_(e)
            dl[k] = float(run_loss()) - base
            for p, s in zip(params, saved):
                p.copy_(s)
        if ctx.active:
            if traffic is not None:
                traffic.add(dl)
            dist.all_reduce(dl)
        scale = 1.0 / (draws * sigma * sigma)
        ScalarUpdate(params, dl * scale, xi).rebuild(dl * scale)
    return dl


def params_checksum(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A float64 fingerprint of some tensors (sum and sum of squares of each, in order)."""
    vals = []
    for t in tensors:
        t = t.detach().double()
        vals += [t.sum(), (t * t).sum()]
    return torch.stack(vals).cpu() if vals else torch.zeros(0, dtype=torch.float64)


def check_identical(ctx: Context, tensors: Sequence[torch.Tensor], what: str) -> None:
    """Fail with one clear line unless every rank holds bitwise the same ``tensors``."""
    if not ctx.active:
        return
    mine = params_checksum(tensors)
    parts = [torch.empty_like(mine) for _ in range(ctx.world)]
    dist.all_gather(parts, mine)
    for r, p in enumerate(parts):
        if not torch.equal(p, parts[0]):
            raise DistributedError(f"{what} differ between rank 0 and rank {r} (a rank was started with other "
                                   "options or another checkpoint)")


def report_failure(ctx: Context, exc: BaseException) -> None:
    """One line on stderr naming the rank that failed (torchrun then stops the others)."""
    if ctx.active:
        print(f"error: rank {ctx.rank} of {ctx.world} failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def refuse_unsupported(ctx: Context, rule: Any, batch_size: int, n_train: int) -> None:
    """Check once, before training, what data parallelism cannot split."""
    if not ctx.active:
        return
    if batch_size <= 0 or batch_size < ctx.world:
        raise ConfigError(f"train.batch_size ({batch_size}) must be at least the number of processes "
                          f"({ctx.world}): each rank takes a share of every batch")
    last = n_train % batch_size
    if 0 < last < ctx.world:
        raise ConfigError(f"the last batch of an epoch holds {last} samples ({n_train} % {batch_size}), fewer than "
                          f"the {ctx.world} processes: choose a batch size that leaves at least {ctx.world}")
    if getattr(rule, "uses_optimizer", True) is False:
        raise ConfigError(f"rule {getattr(rule, 'name', rule)!r} is a solver (closed-form fit on the whole batch): "
                          "it has no data-parallel mode; run it in one process")


__all__ = ["Context", "SINGLE", "current", "GradSync", "ScalarUpdate", "Traffic", "DistributedError", "init_from_env",
           "init_file_store", "shard_range", "mix_seed", "keyed_generator", "wp_scalar_estimate", "check_identical",
           "params_checksum", "backend_for", "free_port", "report_failure", "refuse_unsupported"]
