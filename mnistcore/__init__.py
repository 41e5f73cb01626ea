"""mnistcore: a parameterized CNN, MNIST-family datasets as device tensors, a fast train loop.

Public API (other packages of this project import only these names)::

    from mnistcore import TrainConfig, load_dataset, fit, evaluate
    data = load_dataset("mnist-5k")
    for epoch in fit(TrainConfig(epochs=2), data):
        print(epoch.epoch, epoch.val_accuracy, epoch.images_per_second)

Names are imported on first use (PEP 562), so ``from mnistcore.errors import UserError`` and
``from mnistcore import TrainConfig`` do not import torch: the torch-free report builder shares
the user-error type without paying for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# module -> the public names it defines (space-separated)
_EXPORTS = {
    "mnistcore.config": "DATASETS PRECISIONS PRESETS SCHEDULES TrainConfig preset",
    "mnistcore.data": "Dataset SPLIT_SEED Split VAL_FRACTION iterate_batches load_dataset "
    "resolve_dataset synthetic_digits",
    "mnistcore.device": "available_cores configure_threads device_name resolve_device "
    "resolve_precision seed_everything synchronize",
    "mnistcore.errors": "ConfigError DatasetError DeviceError NonFiniteLossError UserError",
    "mnistcore.model": "build_model count_parameters save_weights",
    "mnistcore.population": "EVAL_BATCH Evaluation MEMBER_FIELDS Population PopulationResult "
    "fit_population fusible_key group_configs",
    "mnistcore.recipe": "RecipeError read_recipe recipe_text write_recipe",
    "mnistcore.train": "EpochResult evaluate fit",
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names.split()}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'mnistcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup skips this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
