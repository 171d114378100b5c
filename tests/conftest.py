import pytest
import torch

from bcosdiff.networks import UNetConfig

# Tests use tiny tensors: one thread avoids OpenMP synchronisation costs that dominate
# small kernels (and that explode when another process keeps the cores busy).
torch.set_num_threads(1)


# U-Net overrides for tiny model directories (8×8 pixels).
TINY_UNET = dict(
    model_channels=16,
    channel_mult=[1, 2],
    attention_levels=[1],
    head_channels=8,
    norm_groups=4,
    sample_size=8,
)


def tiny_unet_config(kind: str = "bcos", **overrides) -> UNetConfig:
    base = dict(
        kind=kind,
        model_channels=16,
        channel_mult=(1, 2),
        attention_levels=(1,),
        head_channels=8,
        context_dim=12,
        norm_groups=4,
        sample_size=8,
    )
    base.update(overrides)
    return UNetConfig(**base)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield
