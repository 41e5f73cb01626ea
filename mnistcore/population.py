"""``Population``: K configurations of one architecture trained as one fused module (HFTA's
idea), the one trainer: ``fit`` is a population of one, the search trains K at a time.

- the first conv has K*width output channels (all read the 1-channel input); later convs are
  grouped (``groups=K``); one ``F.batch_norm`` over the K*C stacked channels keeps each
  member's statistics; linear layers are batched matmuls with weights (K, in, out);
- the loss is the sum of the members' mean cross-entropies, so each gets its own gradient;
- SGD with per-member lr, momentum and weight decay as (K,) tensors, broadcast over every
  parameter viewed member-first (``t.unflatten(0, (K, -1))`` is a view in any memory format).

Members may differ in ``MEMBER_FIELDS``. Member i starts from ``build_model(configs[i])``'s
weights after ``seed_everything(configs[i].seed)``. All members see one batch order (and
dropout generator) seeded with the FIRST member's seed, so member 0 trains exactly as
``fit(configs[0])`` and the others as ``fit`` with member 0's batch order.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mnistcore.config import TrainConfig
from mnistcore.data import Dataset, Split, iterate_batches
from mnistcore.device import (
    configure_threads,
    resolve_device,
    resolve_precision,
    seed_everything,
    synchronize,
)
from mnistcore.errors import NonFiniteLossError
from mnistcore.model import build_model

NAN_CHECK_EVERY = 50  # steps between divergence checks; each check is a CPU-GPU sync point
EVAL_BATCH = 2048  # images per forward pass when evaluating

# The fields members of one population may differ in; every other TrainConfig field is shared.
MEMBER_FIELDS = ("lr", "momentum", "weight_decay", "dropout", "seed")
# nn.BatchNorm2d's defaults, which build_model uses
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
# On the CPU the conv blocks run a few members at a time, so that block 0's output (the largest
# activation, B x members x width x 24 x 24 float32) stays under this many bytes; on CUDA all
# members run at once. Two reasons, measured on the 2-core CPU here (torch 2.14, oneDNN): a
# tensor over glibc's largest mmap threshold (32 MiB) is a fresh mmap at every allocation and
# its page faults cost more than the op (K=8 default net, batch 128, block 0 = 37.7 MB: conv
# forward 27.6 ms vs 5.2 ms with malloc told not to mmap); and a working set that fits in the
# caches (L2 1 MiB/core, L3 32 MiB shared). Member-img/s, Population.train vs K separate
# plain nn.Module SGD loops (before fit became a population of one), medians of 12-15
# interleaved 5-6-step windows: default net (depth 2, width 16, BN, batch 128) K=8: 7.3k
# all at once vs 10.3k at 12 MiB (10.5k at 3 or 6 MiB; separate 9.5k); seed net K=16: 40.1k
# at once, 32.8k at 3 MiB, 42.3k at 6 MiB, 42.9k at 12 MiB (separate 19.5k).
CPU_CHUNK_BYTES: int | None = 12 * 2**20
# channels_last made no difference beyond noise to the fused module on the CPU (same runs:
# default net 10.3k NCHW vs 10.6k NHWC, seed net 42.9k vs 40.9k), and in NCHW the per-member
# flatten is a view, so on the CPU it ignores ``config.channels_last``; on CUDA (where cuDNN
# prefers NHWC) it follows it.
CPU_CHANNELS_LAST = False


def fusible_key(config: TrainConfig) -> tuple:
    """The fields configs must share to train in one population (all but ``MEMBER_FIELDS``)."""
    return tuple(
        (f.name, getattr(config, f.name))
        for f in dataclasses.fields(config)
        if f.name not in MEMBER_FIELDS
    )


def group_configs(configs: Iterable[TrainConfig]) -> list[list[int]]:
    """Indices of ``configs`` grouped by ``fusible_key``; groups in order of first appearance,
    indices ascending inside each group."""
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(fusible_key(config), []).append(i)
    return list(groups.values())


class Evaluation(NamedTuple):
    accuracy: float  # fraction correct, in [0, 1]
    loss: float  # mean cross-entropy
    n: int  # images evaluated


class PopulationResult(NamedTuple):
    """One member's epoch, as ``fit_population`` yields it."""

    member: int  # index into the configs given to the population
    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's batches (the non-finite value when diverged)
    val_accuracy: float  # fraction correct on the validation split (nan when diverged)
    val_loss: float  # (nan when diverged)
    seconds: float  # wall time of the population's training part of the epoch, shared
    member_images_per_second: float  # training images of one member / seconds
    diverged: str | None  # NonFiniteLossError's message when the member diverged this epoch


class Population:
    """K configurations (``fusible_key`` equal) trained as one fused module on ``data``.

    Member i starts from ``build_model(configs[i])``'s weights after ``seed_everything(seed_i)``
    (construction seeds the global RNGs, as ``fit`` does; the last member's seed is left). All
    members train on one batch order, drawn from a CPU generator seeded with ``configs[0].seed``.
    ``members`` are the indices into ``configs`` still training; ``drop`` removes some (their
    weights, BN statistics and momentum buffers are repacked away), and a member whose loss
    turns NaN/inf is dropped automatically and listed in ``diverged``.
    """

    def __init__(self, configs: Sequence[TrainConfig], data: Dataset) -> None:
        configs = tuple(configs)
        if not configs:
            raise ValueError(f"a population needs at least one config, got {configs=}")
        _check_fusible(configs)
        first = configs[0]
        self.configs = configs
        self.device = resolve_device(first.device)
        self.precision = resolve_precision(first.precision, self.device)  # fp32 | bf16
        # on CUDA too: the CPU still runs the Python side and the batch order's randperm
        configure_threads(first.threads)
        self._data = data.to(self.device)
        self._members = list(range(len(configs)))
        self._divergences: dict[int, NonFiniteLossError] = {}

        self._train_size = len(self._data.train.labels)
        self._steps_per_epoch = math.ceil(self._train_size / first.batch_size)
        self.steps = 0  # optimizer steps taken
        self.images_seen = 0  # training images each member has seen
        self._step_in_epoch = 0
        self._generator = torch.Generator().manual_seed(first.seed)  # the batch order
        self._batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

        self._channels_last = _channels_last(first, self.device)
        self._tensors = _stack_initial_weights(configs, self.device, self._channels_last)
        self._param_names = [n for n in self._tensors if "running_" not in n]
        for name in self._param_names:
            self._tensors[name].requires_grad_(True)
        self._buffers: dict[str, torch.Tensor] | None = None  # SGD momentum, after step 1

        def member_vector(field: str) -> torch.Tensor:  # (K,) float32 on the device
            values = [float(getattr(c, field)) for c in configs]
            return torch.tensor(values, dtype=torch.float32, device=self.device)

        self._momentum = member_vector("momentum")
        self._weight_decay = member_vector("weight_decay")
        self._dropout = member_vector("dropout")
        self._set_flags()
        self._dropout_generator = torch.Generator(device=self.device).manual_seed(first.seed)
        # (total steps, K): member k's lr at each step, peak lr times the shared schedule
        # factor, rounded to float32 once (as SGD rounds its python-float lr in the kernel)
        factors = _schedule_factors(first, self._steps_per_epoch)
        peaks = torch.tensor([c.lr for c in configs], dtype=torch.float64)
        table = torch.tensor(factors, dtype=torch.float64)[:, None] * peaks
        self._lr_table = table.float().to(self.device)

    # ---- state --------------------------------------------------------------------------------

    @property
    def members(self) -> list[int]:
        """Indices (into ``configs``) of the members still training, ascending."""
        return list(self._members)

    @property
    def diverged(self) -> dict[int, str]:
        """Member -> why it was dropped automatically (NonFiniteLossError's message)."""
        return {m: str(e) for m, e in self._divergences.items()}

    def divergence(self, member: int) -> NonFiniteLossError:
        """The error that dropped ``member`` (a KeyError when it did not diverge)."""
        return self._divergences[member]

    @property
    def epoch(self) -> float:
        """Epochs trained so far: images_seen / training-split size."""
        return self.images_seen / self._train_size

    # ---- training -----------------------------------------------------------------------------

    def train(self, images: int) -> dict[int, float]:
        """Train every live member on the next ``images`` training images of the shared batch
        order; return each surviving member's mean train loss over the steps taken.

        Batches are never split: the call trains whole batches until at least ``images`` more
        images have been seen (an epoch's partial last batch counts its real size). Crossing
        an epoch boundary starts a new shuffle drawn from the same generator, as ``fit`` does.
        The schedule ends after ``epochs`` epochs: a call stops there, and a call after it is
        a ValueError (the schedule has no lr for further steps). Losses are
        checked every NAN_CHECK_EVERY steps of an epoch, at its end and at the end of the call
        (one sync for all members each time); members that diverged are dropped and left out.
        """
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            raise ValueError(f"images must be a positive integer, got {images=}")
        total = self.configs[0].epochs * self._train_size
        if self.images_seen >= total:
            raise ValueError(
                f"the schedule has ended: all {total} images of epochs="
                f"{self.configs[0].epochs} are trained; build a population with more epochs"
            )
        if not self._members:
            return {}
        target = min(self.images_seen + images, total)
        loss_sum = torch.zeros(len(self._members), device=self.device)
        sums: list[float] = []
        steps = 0
        while self.images_seen < target and self._members:
            x, y = self._next_batch()
            loss = self._step(x, y, self._lr_table[self.steps])
            loss_sum += loss
            steps += 1
            self.steps += 1
            self.images_seen += len(y)
            self._step_in_epoch += 1
            epoch_end = self._step_in_epoch == self._steps_per_epoch
            if (
                self._step_in_epoch % NAN_CHECK_EVERY == 0
                or epoch_end
                or self.images_seen >= target
            ):
                loss_sum, sums = self._check(loss, loss_sum, steps)
            if epoch_end:
                self._batches = None
                self._step_in_epoch = 0
        return {m: s / steps for m, s in zip(self._members, sums, strict=True)}

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batches is None:
            images, labels = self._data.train
            self._batches = iterate_batches(
                images, labels, self.configs[0].batch_size, self._generator
            )
        return next(self._batches)

    def _step(self, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """One SGD step of every member on ``x`` (B, 1, 28, 28); returns the (K,) losses."""
        logits = self._forward(x, training=True)  # (K, B, 10)
        losses = _member_losses(logits, y).mean(dim=1)  # (K,)
        for name in self._param_names:
            self._tensors[name].grad = None
        losses.sum().backward()  # d(sum)/d(member k's weights) = d(loss_k)/d(...)
        self._sgd(lr)
        return losses.detach()

    @torch.no_grad()
    def _sgd(self, lr: torch.Tensor) -> None:
        """torch.optim.SGD's update (no dampening, no nesterov) with (K,) lr, momentum, wd."""
        k = len(self._members)
        params = [self._tensors[n].unflatten(0, (k, -1)) for n in self._param_names]
        grads = [self._tensors[n].grad.unflatten(0, (k, -1)) for n in self._param_names]
        shapes = [(k,) + (1,) * (p.dim() - 1) for p in params]  # broadcast a (K,) vector
        if self._any_weight_decay:  # grad + wd * p
            wds = [self._weight_decay.view(s) for s in shapes]
            grads = torch._foreach_addcmul(grads, wds, params)
        if self._buffers is None:  # the first step's buffer is the gradient itself
            self._buffers = {
                n: g.clone().flatten(0, 1) for n, g in zip(self._param_names, grads, strict=True)
            }
            bufs = [self._buffers[n].unflatten(0, (k, -1)) for n in self._param_names]
        else:  # buf = momentum * buf + grad
            bufs = [self._buffers[n].unflatten(0, (k, -1)) for n in self._param_names]
            torch._foreach_mul_(bufs, [self._momentum.view(s) for s in shapes])
            torch._foreach_add_(bufs, grads)
        torch._foreach_addcmul_(params, [lr.view(s) for s in shapes], bufs, value=-1.0)

    def _check(
        self, loss: torch.Tensor, loss_sum: torch.Tensor, steps: int
    ) -> tuple[torch.Tensor, list[float]]:
        """Drop the members whose loss is non-finite; returns ``loss_sum`` repacked and its
        values. note: the one CPU-GPU sync point of every NAN_CHECK_EVERY steps."""
        step_losses, sums = torch.stack([loss, loss_sum]).tolist()
        bad = [p for p, s in enumerate(sums) if not math.isfinite(s)]
        if not bad:
            return loss_sum, sums
        epoch = (self.steps - 1) // self._steps_per_epoch + 1  # 1-based, of the last step
        for p in bad:
            value = step_losses[p] if not math.isfinite(step_losses[p]) else sums[p] / steps
            member = self._members[p]
            error = NonFiniteLossError(
                epoch, self._step_in_epoch, value, lr=self.configs[member].lr
            )
            self._divergences[member] = error
        keep = [p for p in range(len(sums)) if p not in bad]
        self._repack(keep)
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        return loss_sum.index_select(0, index), [sums[p] for p in keep]

    # ---- members ------------------------------------------------------------------------------

    def drop(self, members: Iterable[int]) -> None:
        """Remove ``members`` (indices into ``configs``): their weights, BN statistics and
        momentum buffers are repacked away, so they cost nothing afterwards."""
        members = set(members)
        unknown = sorted(members - set(self._members))
        if unknown:
            raise ValueError(f"cannot drop {unknown}: live members are {self._members}")
        keep = [p for p, m in enumerate(self._members) if m not in members]
        self._repack(keep)

    def _repack(self, keep: list[int]) -> None:
        """Keep only the members at positions ``keep`` (ascending) of every per-member tensor."""
        if not keep:  # nobody left: free everything
            self._members, self._tensors, self._buffers = [], {}, None
            return
        k = len(self._members)
        index = torch.tensor(keep, dtype=torch.long, device=self.device)

        def take(t: torch.Tensor) -> torch.Tensor:
            taken = t.detach().unflatten(0, (k, -1)).index_select(0, index).flatten(0, 1)
            if taken.dim() == 4 and self._channels_last:
                return taken.contiguous(memory_format=torch.channels_last)
            return taken.contiguous()

        with torch.no_grad():
            for name, t in self._tensors.items():
                self._tensors[name] = take(t).requires_grad_(name in self._param_names)
            if self._buffers is not None:
                self._buffers = {n: take(b) for n, b in self._buffers.items()}
            for name in ("_momentum", "_weight_decay", "_dropout"):
                setattr(self, name, getattr(self, name).index_select(0, index))
            self._lr_table = self._lr_table.index_select(1, index)
        self._members = [self._members[p] for p in keep]
        self._set_flags()

    def _set_flags(self) -> None:
        """Skip weight decay and dropout work when no live member uses them."""
        live = [self.configs[m] for m in self._members]
        self._any_weight_decay = any(c.weight_decay > 0 for c in live)
        self._any_dropout = any(c.dropout > 0 for c in live)

    def member_model(self, member: int) -> nn.Module:
        """A plain ``build_model(configs[member])`` module on the population's device holding
        the member's current weights and BN running statistics (same state_dict keys)."""
        position = self._position(member)
        config = self.configs[member]
        with torch.random.fork_rng(devices=[]):  # build_model's init draws from the CPU RNG
            model = build_model(config, self.device)
        k = len(self._members)
        with torch.no_grad():
            for name, tensor in _member_tensors(model).items():
                mine = self._tensors[name].detach().unflatten(0, (k, -1))[position]
                tensor.copy_(mine.reshape(tensor.shape))
            for norm in _layers(model)[1]:
                norm.num_batches_tracked.fill_(self.steps)
        return model

    def _position(self, member: int) -> int:
        if member not in self._members:
            raise ValueError(f"member {member} is not live; live members are {self._members}")
        return self._members.index(member)

    # ---- forward and evaluation ---------------------------------------------------------------

    def _forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        """(B, 1, 28, 28) -> every member's float32 logits (K, B, 10)."""
        if self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return self._forward_fp(x, training=training).float()
        return self._forward_fp(x, training=training)

    def _forward_fp(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        t, k = self._tensors, len(self._members)
        per_chunk = self._members_per_chunk(len(x))
        parts = [
            self._conv_stack(x, lo, min(lo + per_chunk, k), training=training)
            for lo in range(0, k, per_chunk)
        ]
        h = parts[0] if len(parts) == 1 else torch.cat(parts)  # (K, B, C*H*W)
        h = F.relu(torch.baddbmm(t["fc0.bias"].unsqueeze(1), h, t["fc0.weight"]))  # (K, B, hid)
        if training and self._any_dropout:
            keep = (1 - self._dropout).view(k, 1, 1)
            draws = torch.rand(h.shape, generator=self._dropout_generator, device=h.device)
            h = h * ((draws < keep) / keep).to(h.dtype)
        return torch.baddbmm(t["fc1.bias"].unsqueeze(1), h, t["fc1.weight"])  # (K, B, 10)

    def _conv_stack(self, x: torch.Tensor, lo: int, hi: int, *, training: bool) -> torch.Tensor:
        """Members lo..hi-1's conv blocks on x (B, 1, 28, 28) -> (hi-lo, B, C*H*W), each
        member's map flattened in nn.Flatten's (c, y, x) order."""
        t, config = self._tensors, self.configs[0]
        h = x
        for b in range(config.depth):
            rows = slice(lo * config.width * 2**b, hi * config.width * 2**b)  # their channels
            h = F.conv2d(
                h,
                t[f"conv{b}.weight"][rows],
                t[f"conv{b}.bias"][rows],
                padding=0 if b == 0 else 2,
                groups=1 if b == 0 else hi - lo,  # block 0: all read the one input channel
            )  # (B, (hi-lo)*C, H, W), member-major channels
            if config.batch_norm:  # updates the running statistics' slices in place
                h = F.batch_norm(
                    h,
                    t[f"bn{b}.running_mean"][rows],
                    t[f"bn{b}.running_var"][rows],
                    t[f"bn{b}.weight"][rows],
                    t[f"bn{b}.bias"][rows],
                    training=training,
                    momentum=BN_MOMENTUM,
                    eps=BN_EPS,
                )
            h = F.relu(F.max_pool2d(h, 2))  # pool then ReLU, as build_model
        return h.reshape(h.shape[0], hi - lo, -1).transpose(0, 1)

    def _members_per_chunk(self, batch: int) -> int:
        """How many members' conv blocks run at once: all on CUDA; on the CPU as many as keep
        the first conv's output under CPU_CHUNK_BYTES (see there)."""
        k = len(self._members)
        if self.device.type != "cpu" or CPU_CHUNK_BYTES is None:
            return k
        config = self.configs[0]
        member_bytes = batch * config.width * 24 * 24 * 4  # block 0's output, float32
        return max(1, min(k, CPU_CHUNK_BYTES // member_bytes))

    def evaluate(self, split: str | Split = "val") -> dict[int, Evaluation]:
        """Each live member's accuracy and mean loss on ``split`` ("train", "val", "test" or a
        Split), in eval mode (BN running statistics, no dropout)."""
        if isinstance(split, str):
            if split not in ("train", "val", "test"):
                raise ValueError(f"split must be train, val, test or a Split, got {split=}")
            split = getattr(self._data, split)
        if not self._members:
            return {}
        k = len(self._members)
        images, labels = split.images.to(self.device), split.labels.to(self.device)
        batch = max(1, EVAL_BATCH // k)  # K members' activations at once: keep memory flat
        correct = torch.zeros(k, dtype=torch.float64, device=self.device)
        loss_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
        with torch.inference_mode():
            for start in range(0, len(labels), batch):
                x, y = images[start : start + batch], labels[start : start + batch]
                logits = self._forward(x, training=False)
                loss_sum += _member_losses(logits, y).sum(dim=1)
                correct += (logits.argmax(dim=2) == y).sum(dim=1)
        n = len(labels)
        # note: .tolist() is a CPU-GPU sync point, once per evaluation
        accuracies, losses = torch.stack([correct, loss_sum]).div_(max(n, 1)).tolist()
        return {m: Evaluation(accuracies[p], losses[p], n) for p, m in enumerate(self._members)}


def fit_population(
    configs: Sequence[TrainConfig], data: Dataset
) -> Iterator[tuple[Population, list[PopulationResult]]]:
    """Train ``configs`` as one Population; after each epoch yield ``(population, results)``.

    ``results`` has one PopulationResult per live member, plus one (with ``diverged`` set) per
    member that diverged during the epoch, ordered by member. Between epochs the caller may
    ``population.drop(...)`` members (pruning) or read ``population.member_model(i)``; it
    must not call ``population.train`` itself. Stops early when no member is left.
    """
    population = Population(configs, data)
    train_size = population._train_size
    for epoch in range(1, configs[0].epochs + 1):
        if not population.members:
            return
        known = set(population.diverged)
        synchronize(population.device)  # the clock starts with the device idle
        start = time.perf_counter()
        losses = population.train(train_size)  # ends with a sync (the loss check)
        seconds = time.perf_counter() - start
        val = population.evaluate("val")
        speed = train_size / seconds
        results = [
            PopulationResult(m, epoch, loss, val[m].accuracy, val[m].loss, seconds, speed, None)
            for m, loss in losses.items()
        ]
        results += [
            PopulationResult(m, epoch, e.loss, math.nan, math.nan, seconds, speed, str(e))
            for m, e in population._divergences.items()
            if m not in known
        ]
        yield population, sorted(results, key=lambda r: r.member)


# ---- helpers ------------------------------------------------------------------------------------


def _check_fusible(configs: Sequence[TrainConfig]) -> None:
    first = dict(fusible_key(configs[0]))
    for i, config in enumerate(configs[1:], start=1):
        for name, value in fusible_key(config):
            if value != first[name]:
                raise ValueError(
                    f"configs[{i}] has {name}={value!r} but configs[0] has {name}="
                    f"{first[name]!r}; only {', '.join(MEMBER_FIELDS)} may differ inside a "
                    "population (group_configs splits configs into populations)"
                )


def _channels_last(config: TrainConfig, device: torch.device) -> bool:
    """Whether the fused convs run in NHWC (on the CPU: see CPU_CHANNELS_LAST's figures)."""
    if device.type == "cpu":
        return config.channels_last and CPU_CHANNELS_LAST
    return config.channels_last


def _layers(model: nn.Module) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d], list[nn.Linear]]:
    """build_model's convs, batch norms and linear layers, each in forward order."""
    modules = list(model.modules())
    return (
        [m for m in modules if isinstance(m, nn.Conv2d)],
        [m for m in modules if isinstance(m, nn.BatchNorm2d)],
        [m for m in modules if isinstance(m, nn.Linear)],
    )


def _member_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """``build_model``'s tensors under the population's names (linear weights as (in, out)
    views): conv{b}.weight/bias, bn{b}.weight/bias/running_mean/running_var, fc{j}.weight/bias.
    """
    convs, norms, linears = _layers(model)
    tensors: dict[str, torch.Tensor] = {}
    for b, conv in enumerate(convs):
        tensors[f"conv{b}.weight"], tensors[f"conv{b}.bias"] = conv.weight, conv.bias
    for b, norm in enumerate(norms):
        for field in ("weight", "bias", "running_mean", "running_var"):
            tensors[f"bn{b}.{field}"] = getattr(norm, field)
    for j, linear in enumerate(linears):
        tensors[f"fc{j}.weight"], tensors[f"fc{j}.bias"] = linear.weight.T, linear.bias
    return tensors


def _stack_initial_weights(
    configs: Sequence[TrainConfig], device: torch.device, channels_last: bool
) -> dict[str, torch.Tensor]:
    """Each member's ``build_model`` weights after ``seed_everything(seed)`` (as ``fit``:
    seed, then build), stacked member-first. Leaves the global RNGs seeded by the last member.

    conv{b}.weight (K*C, C_in, 5, 5), conv{b}.bias (K*C,), bn{b}.* (K*C,),
    fc{j}.weight (K, in, out) (nn.Linear's transposed), fc{j}.bias (K, out).
    """
    per_member = []
    for config in configs:
        seed_everything(config.seed)
        per_member.append(_member_tensors(build_model(config)))  # init draws on the CPU

    stacked: dict[str, torch.Tensor] = {}
    for name in per_member[0]:
        parts = [tensors[name].detach() for tensors in per_member]
        joined = torch.stack(parts) if name.startswith("fc") else torch.cat(parts)
        if joined.dim() == 4 and channels_last:
            joined = joined.contiguous(memory_format=torch.channels_last)
        else:
            joined = joined.contiguous()
        stacked[name] = joined.to(device)
    return stacked


def _schedule_factors(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The shared lr factor of each step (torch's scheduler for a peak lr of 1.0, read before
    each step as an optimizer would use it)."""
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    total = config.epochs * steps_per_epoch
    scheduler = None
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            dummy, max_lr=1.0, total_steps=total, cycle_momentum=False
        )
    elif config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(dummy, T_max=total)
    factors = []
    for _ in range(total):
        factors.append(dummy.param_groups[0]["lr"])
        if scheduler is not None:
            dummy.step()  # no gradient: nothing moves, but the scheduler sees a step was taken
            scheduler.step()
    return factors


def _member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy (K, B) of logits (K, B, 10) against labels (B,)."""
    k, b, classes = logits.shape
    return F.cross_entropy(logits.reshape(k * b, classes), y.repeat(k), reduction="none").view(
        k, b
    )
