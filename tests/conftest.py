import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


REPOSITORY = Path(__file__).resolve().parent.parent


def assert_pixels_agree(actual, expected, *, max_share: float = 0.01) -> None:
    """Two 8-bit images of one computation done by different float kernels (another CPU's
    instruction set, a batched replay against a single run): every value within one level,
    and at most ``max_share`` of them off by that level. The float results agree to about
    1e-6; only values that sit on a rounding boundary may land one level apart. A real change
    to the sampler or the network moves many pixels by many levels."""
    a = np.asarray(actual, dtype=np.int16)
    b = np.asarray(expected, dtype=np.int16)
    assert a.shape == b.shape
    off = np.abs(a - b)
    assert int(off.max(initial=0)) <= 1, f"pixels differ by up to {int(off.max())} levels"
    share = float((off > 0).mean())
    assert share <= max_share, f"{share:.2%} of the pixel values differ"


def _untracked_changes() -> set[str] | None:
    """``git status --porcelain`` lines of the work tree (None outside a git work tree)."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(done.stdout.splitlines()) if done.returncode == 0 else None


def pytest_sessionstart(session):
    session.config._work_tree_before = _untracked_changes()


def pytest_sessionfinish(session, exitstatus):
    """The suite writes only under temporary directories: fail it if the work tree changed."""
    before = getattr(session.config, "_work_tree_before", None)
    after = _untracked_changes()
    if before is None or after is None:
        return
    new = sorted(after - before)
    if new:
        sys.stderr.write(
            "\nthe test suite changed the work tree (tests must write under tmp_path):\n  "
            + "\n  ".join(new)
            + "\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


def torchrun_two_processes(args: list[str], port: int) -> None:
    """Run ``torchrun --nproc_per_node 2 ARGS`` on this machine (gloo); skip the test when
    torchrun is not installed next to this Python, fail it with the tail of stderr."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    command = [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    command += ["--master_port", str(port), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
