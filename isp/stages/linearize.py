"""sRGB linearization: an ordinary sRGB image -> a raw-like linear image the ISP can render (the paper's tool;
CIE XYZ Net, Afifi et al., TPAMI 2021).

The official tool reads a third-party JPEG/PNG (one that carries no raw of its own), undoes its rendering with CIE
XYZ Net and pretends the result came from a synthetic camera under D50. In order:

1. ``net_in = 0.85 * srgb`` (``SRGB_SCALE``; ``srgb`` is the 8-bit image divided by 255);
2. ``xyz = CIEXYZNet(net_in)``:

   * local branch: 8 zero-padded 3x3 convolutions (3->24, six 24->24 with LeakyReLU(0.01) after each of the first
     seven, 24->3), ``tanh``, times 0.25; ``l = net_in - local``;
   * global branch: ``l`` resized bilinearly (align_corners=False) to 96x96, four [3x3 conv 24, LeakyReLU,
     2x2 max-pool] blocks (-> 24x6x6 = 864 values), then Linear 864->512, LeakyReLU, 512->256, LeakyReLU,
     256->256, 256->18 reshaped to ``M`` (3x6);
   * per pixel ``xyz = M · [r, g, b, r², g², b²]`` of ``l``;

3. ``raw = clip(diag(D50_RAW_ILLUM) · D50_INV_RAW_TO_XYZ · (0.7 · xyz), 0, 1)`` (``XYZ_SCALE`` = 0.7): XYZ to the
   synthetic camera's raw space, with the D50 illuminant put back (so white balance with ``D50_RAW_ILLUM`` undoes it).

The rest of the ISP then renders ``raw`` with ``illum = D50_RAW_ILLUM`` and ``ccm = D50_CCM`` (the constant
metadata the official reader returns for linearized images). The three matrices are folded into one 3x3 matrix
(:data:`XYZ_TO_RAW`) applied in float32; the official code applies them in float64, a difference of ~1e-7.

Shapes: ``srgb (B, 3, H, W)`` in [0, 1], any ``H, W >= 1`` -> ``raw (B, 3, H, W)`` in [0, 1] and
``xyz (B, 3, H, W)``. Checkpoint: ``io_/models/cie_xyz_net.pth`` (keys ``srgb2xyz_local_net.net.convN`` and
``srgb2xyz_globa_net.net.{convN,fc1,fc2,fc3,out}``, remapped by :data:`LINEARIZE_KEY_RULES`).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from isp.checkpoints import load_strict, read_state_dict, remap_keys
from isp.registry import BuildConfig, StageSpec, TensorSpec
from isp.stages.common import act

__all__ = ["SRGB_SCALE", "XYZ_SCALE", "D50_RAW_ILLUM", "D50_INV_RAW_TO_XYZ", "D50_CCM", "XYZ_TO_RAW",
           "quadratic_features", "xyz_to_raw", "CIEXYZNet", "Linearize", "LINEARIZE_KEY_RULES", "checkpoint_path",
           "build", "SPEC"]

SRGB_SCALE = 0.85
XYZ_SCALE = 0.7
#: the synthetic camera's D50 illuminant in its raw space (G = 1)
D50_RAW_ILLUM = (0.47183424, 1.0, 0.6412845)
#: XYZ -> that camera's white-balanced raw
D50_INV_RAW_TO_XYZ = ((1.81713277, -0.60861565, -0.1730732),
                      (-0.26556286, 1.1600217, 0.11623782),
                      (-0.07264907, 0.42998402, 0.77540641))
#: that camera's raw -> linear sRGB colour correction matrix (passed to the colour stage with ``D50_RAW_ILLUM``)
D50_CCM = ((1.65023296, -0.45531686, -0.19612742),
           (-0.31783843, 1.58334158, -0.26515062),
           (-0.01829498, -0.92885035, 1.94742248))
#: ``XYZ_SCALE · diag(D50_RAW_ILLUM) · D50_INV_RAW_TO_XYZ``: XYZ straight to raw
XYZ_TO_RAW = tuple(tuple(XYZ_SCALE * D50_RAW_ILLUM[i] * v for v in row) for i, row in enumerate(D50_INV_RAW_TO_XYZ))

LOCAL_DEPTH, GLOBAL_DEPTH, WIDTH, GLOBAL_IN, LOCAL_SCALE = 8, 4, 24, 96, 0.25


# ----------------------------------------------------------------------------------------------- pure functions

def quadratic_features(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, N) -> (B, 6, N)``: ``[r, g, b, r², g², b²]`` per pixel."""
    return torch.cat([x, x * x], dim=1)


def xyz_to_raw(xyz: torch.Tensor) -> torch.Tensor:
    """Step 3 of the module docstring: ``(B, 3, H, W)`` XYZ -> raw clipped to [0, 1]."""
    c0, c1, c2 = xyz[:, 0:1], xyz[:, 1:2], xyz[:, 2:3]
    return torch.cat([r[0] * c0 + r[1] * c1 + r[2] * c2 for r in XYZ_TO_RAW], dim=1).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------------ modules

class CIEXYZNet(nn.Module):
    """``forward(net_in) -> xyz``; :meth:`local` and :meth:`global_matrix` expose the two branches."""

    def __init__(self) -> None:
        super().__init__()
        chans = [3] + [WIDTH] * (LOCAL_DEPTH - 1) + [3]
        self.local_convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1) for i in range(LOCAL_DEPTH))
        gchans = [3] + [WIDTH] * GLOBAL_DEPTH
        self.global_convs = nn.ModuleList(nn.Conv2d(gchans[i], gchans[i + 1], 3, padding=1)
                                          for i in range(GLOBAL_DEPTH))
        flat = WIDTH * (GLOBAL_IN >> GLOBAL_DEPTH) ** 2
        self.fc1 = nn.Linear(flat, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, 256)
        self.out = nn.Linear(256, 18)

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """Local branch: ``(B, 3, H, W) -> (B, 3, H, W)`` in [-0.25, 0.25]."""
        for conv in self.local_convs[:-1]:
            x = act(conv(x))
        return LOCAL_SCALE * torch.tanh(self.local_convs[-1](x))

    def global_matrix(self, l: torch.Tensor) -> torch.Tensor:
        """Global branch: ``(B, 3, H, W) -> (B, 3, 6)`` matrix M."""
        x = F.interpolate(l, size=(GLOBAL_IN, GLOBAL_IN), mode="bilinear", align_corners=False)
        for conv in self.global_convs:
            x = F.max_pool2d(act(conv(x)), 2)
        x = act(self.fc1(x.flatten(1)))
        x = act(self.fc2(x))
        return self.out(self.fc3(x)).reshape(-1, 3, 6)

    def forward(self, net_in: torch.Tensor) -> torch.Tensor:
        b, _, h, w = net_in.shape
        l = net_in - self.local(net_in)
        m = self.global_matrix(l)
        return torch.matmul(m, quadratic_features(l.reshape(b, 3, h * w))).reshape(b, 3, h, w)


class Linearize(nn.Module):
    """``forward(srgb) -> (raw, xyz)``: the whole linearization of the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.net = CIEXYZNet()

    def forward(self, srgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xyz = self.net(SRGB_SCALE * srgb)
        return xyz_to_raw(xyz), xyz


# ------------------------------------------------------------------------------------------ checkpoint + registry

LINEARIZE_KEY_RULES = (
    (r"^srgb2xyz_local_net\.net\.conv(\d+)\.", r"net.local_convs.\1."),
    (r"^srgb2xyz_globa_net\.net\.conv(\d+)\.", r"net.global_convs.\1."),
    (r"^srgb2xyz_globa_net\.net\.(fc1|fc2|fc3|out)\.", r"net.\1."),
)


def checkpoint_path(cfg: BuildConfig) -> Path:
    return cfg.weights / "io_" / "models" / "cie_xyz_net.pth"


def build(cfg: BuildConfig) -> Linearize:
    path = checkpoint_path(cfg)
    return load_strict(Linearize(), remap_keys(read_state_dict(path), LINEARIZE_KEY_RULES), path).eval()


SPEC = StageSpec(
    id="linearize",
    build=build,
    inputs=(TensorSpec("srgb", "B,3,H,W", (0.0, 1.0), "display sRGB (8-bit image / 255)"),),
    outputs=(
        TensorSpec("raw", "B,3,H,W", (0.0, 1.0), "raw-like image of the synthetic D50 camera"),
        TensorSpec("xyz", "B,3,H,W", None, "CIE XYZ Net output (before the 0.7 scale)"),
    ),
    resolution="full",
    paper="tool: sRGB inputs (CIE XYZ Net, TPAMI 2021)",
    checkpoint=checkpoint_path,
)
