"""Access to the official B-cos v2 layers (PyPI ``bcos``) as a numerical reference.

``import bcos`` runs ``bcos/__init__.py``, which imports torchvision and the whole model zoo.
The layer modules themselves only need torch and numpy. We therefore register *empty*
package objects for ``bcos`` and ``bcos.modules`` (with the installed directories as their
``__path__``), so that importing ``bcos.modules.bcosconv2d`` loads just that file and its
two small dependencies (``bcos/modules/common.py`` and ``bcos/common.py``). Nothing of the
installed package is modified, and the rest of the process sees the stubs only inside
:func:`official_modules`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def _stub_packages(root: Path):
    saved = {k: v for k, v in sys.modules.items() if k == "bcos" or k.startswith("bcos.")}
    for key in saved:
        del sys.modules[key]
    try:
        for name, path in (("bcos", root), ("bcos.modules", root / "modules")):
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
        yield
    finally:
        for key in [k for k in sys.modules if k == "bcos" or k.startswith("bcos.")]:
            del sys.modules[key]
        sys.modules.update(saved)


def official_modules() -> types.SimpleNamespace:
    """``BcosConv2d``, ``BcosLinear``, ``group_norm_uncentered`` and the centred
    ``DetachableGroupNorm2d`` / ``DetachableLayerNorm`` of B-cos v2, or skip."""
    spec = importlib.util.find_spec("bcos")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the reference package 'bcos' is not installed (pip install -e .[dev])")
    root = Path(next(iter(spec.submodule_search_locations)))
    with _stub_packages(root):
        conv = importlib.import_module("bcos.modules.bcosconv2d")
        linear = importlib.import_module("bcos.modules.bcoslinear")
        norms = importlib.import_module("bcos.modules.norms.uncentered_norms.groupnorm_uncentered")
        centred = importlib.import_module("bcos.modules.norms.centered_norms")
    return types.SimpleNamespace(
        BcosConv2d=conv.BcosConv2d,
        BcosLinear=linear.BcosLinear,
        group_norm_uncentered=norms.group_norm_uncentered,
        DetachableGroupNorm2d=centred.DetachableGroupNorm2d,
        DetachableLayerNorm=centred.DetachableLayerNorm,
    )
