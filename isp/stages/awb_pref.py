"""User-preference white balance: map a neutral AWB estimate to the illuminant users prefer (official
``awb_ccm/user_pref_mapping.py``; "Learning Camera-Agnostic White-Balance Preferences", arXiv 2507.01342).

The mapping runs in CIE XYZ so that it is camera-agnostic (:func:`map_illuminant`):

1. divide the raw-RGB illuminant by G;
2. raw -> XYZ: the CCT of the illuminant by fixed-point iteration through the ColorMatrix pair (Robertson's
   method), the XYZ->camera matrix interpolated at that CCT in inverse CCT (clamped to the calibration range),
   inverted and applied;
3. the network (:class:`UserPrefNet`): 10-term polynomial ``[x, y, z, xy, xz, yz, x², y², z², xyz]`` -> Linear
   10->16 -> BatchNorm1d -> ELU -> 16->8 -> ELU -> 8->16 -> ELU -> 16->3, divided by its L2 norm;
4. XYZ -> raw: one-shot Robertson CCT of the XYZ, the interpolated matrix times the XYZ, divided by G.

Weights: ``awb_ccm/models/model-c5_single_encoder_neutral_to_s24_user_pref.pt`` (loaded strictly; official keys
lose their leading underscores).

Deviation from the official code: a DNG with a single ColorMatrix (or calibration illuminants the EXIF table does
not know) uses that one matrix at every CCT instead of failing; the official ``map_illum`` raises there. The
tint clamp that follows the mapping lives with the colour-correction post-processing (:mod:`isp.awb`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys
from isp.io import color_metadata as cm
from isp.registry import BuildConfig, StageSpec, TensorSpec

__all__ = ["poly_features", "UserPrefNet", "raw_to_xyz_on_illum", "xyz_to_raw_on_illum", "map_illuminant",
           "pref_checkpoint", "build_pref", "KEY_RULES", "SPEC"]


def poly_features(xyz: torch.Tensor) -> torch.Tensor:
    """``(B, 3) -> (B, 10)``: ``[x, y, z, xy, xz, yz, x², y², z², xyz]``."""
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    return torch.stack([x, y, z, x * y, x * z, y * z, x * x, y * y, z * z, x * y * z], dim=-1)


class UserPrefNet(nn.Module):
    """``xyz (B, 3) -> xyz (B, 3)`` with unit L2 norm: the preferred illuminant in XYZ."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 16)
        self.bn1 = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 8)
        self.fc3 = nn.Linear(8, 16)
        self.fc4 = nn.Linear(16, 3)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        h = F.elu(self.bn1(self.fc1(poly_features(xyz))))
        h = F.elu(self.fc3(F.elu(self.fc2(h))))
        out = self.fc4(h)
        return out / torch.linalg.vector_norm(out, dim=-1, keepdim=True)


def raw_to_xyz_on_illum(raw: np.ndarray, cm1, cm2, illuminants: tuple[int, int]) -> np.ndarray:
    """(3,) G-normalised raw illuminant -> (3,) XYZ via the ColorMatrix pair interpolated at its CCT."""
    cct = cm.cct_from_raw_rgb(raw, cm1, cm2, illuminants)
    xyz_to_cam = cm.interpolate_by_cct(cm1, cm2, cct, illuminants, clamp=True)
    return np.linalg.inv(xyz_to_cam) @ np.asarray(raw, dtype=np.float64)


def xyz_to_raw_on_illum(xyz: np.ndarray, cm1, cm2, illuminants: tuple[int, int]) -> np.ndarray:
    """(3,) XYZ illuminant -> (3,) raw (not normalised) through the matrix interpolated at its one-shot CCT."""
    cct = cm.xyz_to_cct(xyz)
    return cm.interpolate_by_cct(cm1, cm2, cct, illuminants, clamp=True) @ np.asarray(xyz, dtype=np.float64)


@torch.inference_mode()
def map_illuminant(net: UserPrefNet, illum: np.ndarray, cm1, cm2, illuminants: tuple[int, int]
                   ) -> dict[str, np.ndarray]:
    """The whole mapping for one illuminant. Returns ``in_raw`` (G = 1), ``in_xyz``, ``out_xyz`` (unit norm) and
    ``out_raw`` (G = 1), float64 (the golden keys ``up_in_raw``, ``up_in_xyz``, ``up_out_xyz``,
    ``c5_illum_userpref``)."""
    ill = np.asarray(illum, dtype=np.float32).ravel()[:3]
    in_raw = (ill / ill[1]).astype(np.float64)
    in_xyz = raw_to_xyz_on_illum(in_raw, cm1, cm2, illuminants)
    dev = next(net.parameters()).device
    out_xyz = net(torch.as_tensor(in_xyz, dtype=torch.float32, device=dev)[None])[0].cpu().numpy().astype(np.float64)
    out_raw = xyz_to_raw_on_illum(out_xyz, cm1, cm2, illuminants)
    return {"in_raw": in_raw, "in_xyz": in_xyz, "out_xyz": out_xyz, "out_raw": out_raw / out_raw[1]}


#: official ``_fc1.weight`` -> ``fc1.weight``
KEY_RULES = ((r"^_", ""),)


def pref_checkpoint(weights: Path) -> Path:
    return Path(weights) / "awb_ccm" / "models" / "model-c5_single_encoder_neutral_to_s24_user_pref.pt"


def build_pref(weights: Path) -> UserPrefNet:
    path = pref_checkpoint(weights)
    return load_strict(UserPrefNet(), remap_keys(read_state_dict(path), KEY_RULES), path).eval()


SPEC = StageSpec(
    id="awb_pref",
    build=lambda cfg: build_pref(cfg.weights),
    inputs=(TensorSpec("up_in_xyz", "B,3", None, "AWB illuminant in CIE XYZ (from raw through the ColorMatrices)"),),
    outputs=(TensorSpec("up_out_xyz", "B,3", None, "preferred illuminant in XYZ, unit L2 norm"),),
    resolution="vector",
    paper="user-preference AWB (arXiv 2507.01342), official awb_ccm/user_pref_mapping.py",
    checkpoint=lambda cfg: pref_checkpoint(cfg.weights),
)
