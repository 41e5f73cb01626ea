"""``build_model``: the parameterized CNN; ``depth=1, width=10`` is the tutorial's net."""

from __future__ import annotations

import os

import torch
from torch import nn

from mnistcore.config import TrainConfig
from mnistcore.device import resolve_precision


def build_model(config: TrainConfig, device: torch.device | str | None = None) -> nn.Module:
    """Build the CNN of ``config`` on ``device`` (default: the CPU), ready to train.

    Blocks are 5x5 conv -> [BatchNorm] -> ReLU -> 2x2 max-pool, computed as pool then ReLU:
    both are monotone so the output is identical, and the ReLU (forward and backward) touches
    4x fewer values. The first conv has no padding,
    as in the seed (28 -> 24 -> 12); later ones pad by 2 so the map only halves (12 -> 6 -> 3
    -> 1). Then flatten -> Linear(hidden) -> ReLU -> [Dropout] -> Linear(10).
    Where the precision resolves to bf16 (``resolve_precision``) the forward runs under
    autocast and the logits come back as float32, so the loss is computed in full precision;
    the state_dict keys are the same in every precision.
    """
    layers: list[nn.Module] = []
    channels, size = 1, 28
    for block in range(config.depth):
        out = config.width * 2**block
        padding = 0 if block == 0 else 2
        layers.append(nn.Conv2d(channels, out, kernel_size=5, padding=padding))
        if config.batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers += [nn.MaxPool2d(2), nn.ReLU()]  # == ReLU then pool, see above
        channels, size = out, (size + 2 * padding - 4) // 2
    layers += [nn.Flatten(), nn.Linear(channels * size * size, config.hidden), nn.ReLU()]
    if config.dropout > 0:
        layers.append(nn.Dropout(config.dropout))
    layers.append(nn.Linear(config.hidden, 10))
    device = torch.device(device or "cpu")
    bf16 = resolve_precision(config.precision, device) == "bf16"
    model = (Bf16Sequential if bf16 else nn.Sequential)(*layers).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Bf16Sequential(nn.Sequential):
    """``nn.Sequential`` whose forward runs under bf16 autocast, returning float32 logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return super().forward(x).float()


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s state_dict, on the CPU, to ``path``: read it back with
    ``build_model(config).load_state_dict(torch.load(path, weights_only=True))``."""
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
