"""mnistcore: a parameterized CNN, MNIST-family datasets as device tensors, a fast train loop.

Public API (other packages of this project import only these names)::

    from mnistcore import TrainConfig, load_dataset, fit, evaluate
    data = load_dataset("mnist-5k")
    for epoch in fit(TrainConfig(epochs=2), data):
        print(epoch.epoch, epoch.val_accuracy, epoch.images_per_second)
"""

from mnistcore.config import DATASETS, PRECISIONS, SCHEDULES, TrainConfig
from mnistcore.data import Dataset, Split, iterate_batches, load_dataset, synthetic_digits
from mnistcore.device import (
    available_cores,
    configure_threads,
    device_name,
    resolve_device,
    seed_everything,
)
from mnistcore.errors import (
    ConfigError,
    DatasetError,
    DeviceError,
    NonFiniteLossError,
    UserError,
)
from mnistcore.model import build_model, count_parameters
from mnistcore.train import (
    EpochResult,
    Evaluation,
    build_optimizer,
    build_scheduler,
    evaluate,
    fit,
    train_step,
)

__all__ = [
    "DATASETS",
    "PRECISIONS",
    "SCHEDULES",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "DeviceError",
    "EpochResult",
    "Evaluation",
    "NonFiniteLossError",
    "Split",
    "TrainConfig",
    "UserError",
    "available_cores",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "configure_threads",
    "count_parameters",
    "device_name",
    "evaluate",
    "fit",
    "iterate_batches",
    "load_dataset",
    "resolve_device",
    "seed_everything",
    "synthetic_digits",
    "train_step",
]
