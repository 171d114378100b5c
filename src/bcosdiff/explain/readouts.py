"""Maps read out of per-token contributions: which pixels each prompt token drew.

An explanation gives every prompt token ``i`` a contribution ``c_i = W_i x_i`` to every output
channel and pixel, ``(6, H, W)`` in the ``(rgb, 1 − rgb)`` encoding; the contributions of all
tokens add up to the reconstruction ``R = W(x)·x``. A *read-out* turns ``c_i`` into a map
``(H, W)``. ``docs/explanations.md`` derives the three below. Per pixel and colour channel,
with eq. 7's colour ``col(v) = v_rgb / (v_rgb + v_inv)``, a token's pair mass
``m_i = c_i,rgb + c_i,inv`` and the reconstruction's ``M = Σ_i m_i``:

    col(R) = Σ_i (m_i / M) · col(c_i)

— the pixel's colour is the mass-weighted mean of the colours the tokens paint. Hence, for
any reference colour ``b``,

    col(R) − b = Σ_i d_i,    d_i = (m_i / M) · (col(c_i) − b) = (c_i,rgb − m_i·b) / M.

* :func:`colour_share` (``"colour"``, the default heat map): ``b`` is the background colour
  (median colour of the border pixels of ``col(R)``), and the map is ``d_i`` projected on the
  pixel's own departure from the background, ``d_i · u`` with ``u = (col(R) − b) / ‖col(R) −
  b‖``. The maps of all tokens add up to ``‖col(R) − b‖``: how far the pixel is from the
  background, split into what each token painted. Positive where the token pushed the pixel
  to the colour it shows, negative where it pushed back towards the background.
* :func:`colour_change` (``"removal"``): ``‖col(R) − col(R − c_i)‖₁``, how far the colour
  moves when the token is taken out; it equals ``(m_i / (M − m_i))·‖col(c_i) − col(R)‖₁`` and
  needs no reference, but a token painting the same colour as the rest gets no credit, so
  two tokens that draw one object together each show little inside it.
* :func:`mass` (``"mass"``): ``Σ_c c_i``, the token's share of the pixel's mass. Every
  pixel's six channels sum to 3, so this measures a share of a constant, not what was
  painted, and does not localise. It sums over tokens to ``Σ_c R``.

For a 3-channel (``rgb``) encoding the decoded image is linear in the output; every read-out
but ``mass`` then returns ``Σ_c |c_i| / 2``, the decoded change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_READOUT",
    "READOUTS",
    "background_colour",
    "colour",
    "colour_change",
    "colour_share",
    "get_readout",
    "mass",
    "painted_colour",
]

EPS = 1e-6  # pair masses closer to zero than this are treated as EPS
FLOOR = 1e-3  # departures from the background shorter than this give no direction


def colour(v: Tensor) -> Tensor:
    """Eq. 7's colour ``v_rgb / (v_rgb + v_inv)`` of 6-channel ``(…, 6, H, W)`` values,
    unclipped; a pair whose mass is (near) zero has its mass replaced by ``EPS``."""
    rgb, inv = v[..., :3, :, :], v[..., 3:, :, :]
    return rgb / _safe(rgb + inv)


def background_colour(reconstruction: Tensor) -> Tensor:
    """``(3, 1, 1)``: the median eq. 7 colour of the reconstruction's border pixels."""
    col = colour(reconstruction)
    border = torch.cat([col[:, 0], col[:, -1], col[:, 1:-1, 0], col[:, 1:-1, -1]], dim=1)
    return border.median(dim=1).values[:, None, None]


def colour_share(contributions: Tensor, reconstruction: Tensor) -> Tensor:
    """``(…, H, W)``: each token's share of the pixel's departure from the background colour.

    ``contributions`` ``(…, 6, H, W)`` are parts of ``reconstruction`` ``(6, H, W)``; the maps
    of parts that add up to the reconstruction add up to ``‖col(R) − b‖`` wherever that
    exceeds ``FLOOR`` (module docstring)."""
    if contributions.shape[-3] == 3:
        return contributions.abs().sum(-3) / 2
    _check_six(contributions)
    b = background_colour(reconstruction)
    pair_mass = _safe(reconstruction[:3] + reconstruction[3:])
    c_rgb, c_inv = contributions[..., :3, :, :], contributions[..., 3:, :, :]
    share = (c_rgb - (c_rgb + c_inv) * b) / pair_mass
    departure = colour(reconstruction) - b
    direction = departure / departure.norm(dim=0, keepdim=True).clamp(min=FLOOR)
    return (share * direction).sum(-3)


def colour_change(contributions: Tensor, reconstruction: Tensor) -> Tensor:
    """``(…, H, W)``: ``‖col(R) − col(R − c)‖₁`` over r, g, b, both colours clipped to
    ``[0, 1]`` (the displayable range, so a pixel left without mass cannot dominate)."""
    if contributions.shape[-3] == 3:
        return contributions.abs().sum(-3) / 2
    _check_six(contributions)
    with_token = colour(reconstruction).clamp(0, 1)
    without = colour(reconstruction - contributions).clamp(0, 1)
    return (with_token - without).abs().sum(-3)


def mass(contributions: Tensor, reconstruction: Tensor | None = None) -> Tensor:
    """``(…, H, W)``: ``Σ_c c`` — the token's share of each pixel's (constant) mass."""
    return contributions.sum(-3)


def painted_colour(contributions: Tensor) -> Tensor:
    """``(…, 3, H, W)`` in ``[0, 1]``: the colour ``col(c)`` a contribution paints, clipped;
    grey where its pair mass is not positive (it removes rather than paints). 3-channel
    contributions are read as an rgb change around mid-grey."""
    if contributions.shape[-3] == 3:
        return (0.5 + contributions / 2).clamp(0, 1)
    _check_six(contributions)
    pair = contributions[..., :3, :, :] + contributions[..., 3:, :, :]
    painted = torch.where(pair > EPS, colour(contributions), torch.full_like(pair, 0.5))
    return painted.clamp(0, 1)


def _safe(pair: Tensor) -> Tensor:
    return torch.where(pair.abs() < EPS, torch.full_like(pair, EPS), pair)


def _check_six(contributions: Tensor) -> None:
    if contributions.shape[-3] != 6:
        raise ValueError(
            f"expected 6-channel (rgb, 1 − rgb) contributions, got {contributions.shape[-3]}"
        )


READOUTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "colour": colour_share,
    "removal": colour_change,
    "mass": mass,
}
"""Read-outs by name: ``readout(contributions, reconstruction) -> maps``."""

DEFAULT_READOUT = "colour"


def get_readout(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The read-out called ``name``; a ValueError lists the known ones."""
    try:
        return READOUTS[name]
    except KeyError:
        raise ValueError(f"unknown read-out {name!r}; expected one of {sorted(READOUTS)}") from None
