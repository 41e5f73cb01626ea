import pytest
import torch
from torch import nn

from mnistcore import TrainConfig, build_model, count_parameters, resolve_precision
from mnistcore.model import Bf16Sequential


def test_seed_preset_parameter_count():
    # conv 1->10 5x5 (260) + fc 1440->128 (184,448) + fc 128->10 (1,290)
    model = build_model(TrainConfig(depth=1, width=10, batch_norm=False, dropout=0.0))
    assert count_parameters(model) == 185_998
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 10, (5, 5))]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(1440, 128), (128, 10)]
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in model.modules())


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("width", [4, 16])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_shapes(depth, width, batch_norm, dropout):
    config = TrainConfig(
        depth=depth, width=width, batch_norm=batch_norm, dropout=dropout, hidden=32
    )
    model = build_model(config)
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # Each block doubles the channels of the one before.
    assert [c.out_channels for c in convs] == [width * 2**i for i in range(depth)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == (
        depth if batch_norm else 0
    )
    assert any(isinstance(m, nn.Dropout) for m in model.modules()) == (dropout > 0)


def test_pool_then_relu_equals_relu_then_pool():
    # The model pools before the ReLU for speed; the output must equal the tutorial's order.
    torch.manual_seed(0)
    model = build_model(TrainConfig(channels_last=False)).eval()
    conv, pool, relu, *rest = list(model)
    x = torch.randn(8, 1, 28, 28)
    tutorial = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), *rest)
    torch.testing.assert_close(model(x), tutorial(x), rtol=0, atol=0)


def test_channels_last_gives_same_function():
    torch.manual_seed(0)
    a = build_model(TrainConfig(channels_last=False))
    torch.manual_seed(0)
    b = build_model(TrainConfig(channels_last=True))
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(a(x), b(x.contiguous(memory_format=torch.channels_last)))


def test_bf16_autocast_returns_float32_logits():
    model = build_model(TrainConfig(precision="bf16"))
    out = model(torch.randn(2, 1, 28, 28))
    assert out.dtype == torch.float32 and out.shape == (2, 10)


def test_weights_load_across_precisions():
    # The bf16 model is an nn.Sequential too: weights saved in one precision load in the other.
    torch.manual_seed(0)
    bf16 = build_model(TrainConfig(precision="bf16", batch_norm=True))
    fp32 = build_model(TrainConfig(precision="fp32", batch_norm=True))
    assert bf16.state_dict().keys() == fp32.state_dict().keys()
    fp32.load_state_dict(bf16.state_dict())


@pytest.mark.parametrize(
    ("flags", "want"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),  # e.g. AMD Zen 4, Intel Cooper Lake
        ({"avx2", "amx_bf16", "amx_tile"}, "bf16"),  # Intel Sapphire Rapids
        ({"avx2", "avx512f"}, "fp32"),  # AVX-512 without bf16: emulated, slow
        ({"avx2", "fma"}, "fp32"),
        (set(), "fp32"),
    ],
)
def test_auto_precision_on_the_cpu_follows_its_flags(flags, want):
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, frozenset(flags)) == want
    # an explicit precision is kept whatever the CPU
    assert resolve_precision("fp32", cpu, frozenset(flags)) == "fp32"
    assert resolve_precision("bf16", cpu, frozenset()) == "bf16"


def test_auto_is_the_default_and_resolves_on_this_machine():
    assert TrainConfig().precision == "auto"
    model = build_model(TrainConfig())
    bf16 = resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert isinstance(model, Bf16Sequential) == bf16
