"""The photofinishing stages with one image in and ``(image, param)`` out (gain, gtm, gamma), checked from the
registry with the same tests for each: golden parity, the operator on the golden parameter, strict checkpoint
loading, shapes and ranges, batch == singles, functional == module, and ``torch.export`` without graph breaks.
A new stage of this kind is one :data:`CASES` entry; what only one stage has is at the end of the file."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

from isp.checkpoints import count_parameters, read_state_dict
from isp.metrics import psnr
from isp.registry import BuildConfig, build_stage, get_stage
from isp.stages import gain as gain_mod
from isp.stages.common import tone_curve
from isp.stages.gain import GAIN_MAX, GAIN_MIN, DigitalGain, ScalarNet, apply_gain, avg_pool_to
from isp.stages.gamma import GAMMA_MAX, GAMMA_MIN, GammaCorrection, apply_gamma
from isp.stages.gtm import GlobalToneMapping, GTMNet, apply_gtm

MIN_DB = 60.0
#: (style, use_lut) for the 11 photofinishing checkpoints of the official release
ALL_CHECKPOINTS = [(0, False)] + [(s, lut) for s in range(1, 6) for lut in (False, True)]
SHAPES = [(1, 3, 96, 128), (2, 3, 37, 53), (1, 3, 128, 128)]


def _gain_ranges(img, p, x):
    assert p.shape == (x.shape[0], 1, 1, 1) and ((p >= GAIN_MIN) & (p <= GAIN_MAX)).all()


def _gtm_ranges(img, p, x):
    assert p.shape == (x.shape[0], 3) and (p > 0).all()
    assert img.min() >= 0.0 and img.max() <= 1.0 and torch.isfinite(img).all()


def _gamma_ranges(img, p, x):
    assert p.shape == (x.shape[0], 1, 1, 1)
    assert ((p >= 1 / GAMMA_MAX - 1e-6) & (p <= 1 / GAMMA_MIN + 1e-6)).all()
    assert img.min() >= 0.0 and img.max() <= 1.0


@dataclass(frozen=True)
class Case:
    """What differs between the stages; everything else is read from the registry (``SPEC``)."""
    module: type
    net_prefix: str                               # the network's keys in the official checkpoint
    params: int                                   # trainable parameters (the paper's count)
    apply: Callable                               # the pure operator: apply(x, param, **mode)
    ranges: Callable                              # asserts on (image, param, input) of a random input
    param_rel_tol: float | None = None            # relative error of the predicted parameter on the golden files
    input_scale: float = 1.0                      # random inputs in [0, scale] (gain-scaled images exceed 1)
    functional_style: int = 0
    modes: tuple[dict, ...] = ({},)               # constructor flags to test (export-friendly formulations)
    forbidden_ops: tuple[str, ...] = ("adaptive",)
    mode_forbidden_ops: dict = field(default_factory=dict)   # flag value -> further op names it must not use
    # forward() may use a float16-safe form equal to predict + apply only up to float32 rounding (GTM's log c,
    # proven in tests/isp/test_gtm_fp16.py): (rtol, atol) of that comparison, None when it must be bit-equal
    forward_tol: tuple[float, float] | None = None


CASES = {
    "gain": Case(DigitalGain, "_gain_net.", 6587, lambda x, p, **m: apply_gain(x, p), _gain_ranges,
                 param_rel_tol=1e-4, functional_style=2),
    "gtm": Case(GlobalToneMapping, "_gtm_net.", 28369, lambda x, p, **m: apply_gtm(x, p), _gtm_ranges,
                param_rel_tol=1e-3, input_scale=1.5, functional_style=4, forward_tol=(1e-5, 2e-6)),
    "gamma": Case(GammaCorrection, "_gamma_net.", 6587,
                  lambda x, p, pow_mode="pow": apply_gamma(x, p, pow_mode), _gamma_ranges, functional_style=5,
                  modes=({"pow_mode": "pow"}, {"pow_mode": "exp_log"}), mode_forbidden_ops={"exp_log": ("pow",)}),
}
STAGE_MODES = [pytest.param(s, m, id=f"{s}-{'-'.join(m.values()) or 'default'}") for s, c in CASES.items()
               for m in c.modes]


@functools.lru_cache(maxsize=None)
def _stage(weights: str, stage: str, style: int, mode: tuple = ()) -> torch.nn.Module:
    return get_stage(stage).build(BuildConfig(weights, style=style), **dict(mode)).eval()


def _io(stage: str) -> tuple[str, str, str]:
    spec = get_stage(stage)
    (inp,), (out, param) = spec.input_names, spec.output_names
    return inp, out, param


def _rel_err(p: torch.Tensor, ref: torch.Tensor) -> float:
    return ((p - ref).abs() / ref.abs().clamp_min(1e-12)).max().item()


# ------------------------------------------------------------------------------------------------ every stage

@pytest.mark.parametrize("stage,mode", STAGE_MODES)
def test_golden_parity(weights_dir, golden_cases, stage, mode):
    case, (inp, out, param) = CASES[stage], _io(stage)
    failures = []
    for g in golden_cases:
        module = _stage(str(weights_dir), stage, g.style_id, tuple(mode.items()))
        with torch.no_grad():
            img, p = module(g[inp])
        db_img, db_par = psnr(img, g[out]), psnr(p, g[param])
        rel = _rel_err(p, g[param])
        print(f"{stage}{mode or ''} {g.name}: {out} {db_img:.1f} dB, {param} {db_par:.1f} dB (rel err {rel:.1e})")
        if db_img < MIN_DB or db_par < MIN_DB or (case.param_rel_tol is not None and rel > case.param_rel_tol):
            failures.append((g.name, db_img, db_par, rel))
    assert not failures, failures


@pytest.mark.parametrize("stage,mode", STAGE_MODES)
def test_apply_golden_param(golden_cases, stage, mode):
    inp, out, param = _io(stage)
    for g in golden_cases:
        db = psnr(CASES[stage].apply(g[inp], g[param], **mode), g[out])
        print(f"{stage} apply{mode or ''} {g.name}: {db:.1f} dB")
        assert db >= MIN_DB, (g.name, db)


@pytest.mark.parametrize("stage", CASES)
@pytest.mark.parametrize("style,use_lut", ALL_CHECKPOINTS)
def test_strict_load(weights_dir, stage, style, use_lut):
    case = CASES[stage]
    cfg = BuildConfig(weights_dir, style=style, use_lut=use_lut)
    module = get_stage(stage).build(cfg)
    assert isinstance(module, case.module) and not module.training
    assert count_parameters(module) == case.params
    sd = read_state_dict(cfg.photofinishing_checkpoint)
    assert sum(v.numel() for k, v in sd.items() if k.startswith(case.net_prefix)) == case.params


@pytest.mark.parametrize("stage", CASES)
def test_param_count_matches_paper(weights_dir, stage):
    assert count_parameters(_stage(str(weights_dir), stage, 0).net) == CASES[stage].params


@pytest.mark.parametrize("stage", CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes(weights_dir, stage, shape):
    torch.manual_seed(0)
    x = torch.rand(shape) * CASES[stage].input_scale
    with torch.no_grad():
        img, p = _stage(str(weights_dir), stage, 0)(x)
    assert img.shape == x.shape
    CASES[stage].ranges(img, p, x)


@pytest.mark.parametrize("stage", CASES)
def test_batch2_equals_singles(weights_dir, golden_cases, stage):
    inp = _io(stage)[0]
    module = _stage(str(weights_dir), stage, 0)
    x = torch.cat([golden_cases[0][inp], golden_cases[1][inp]])
    with torch.no_grad():
        img, p = module(x)
        singles = [module(x[i:i + 1]) for i in range(2)]
    for i, (img1, p1) in enumerate(singles):
        assert torch.allclose(img[i:i + 1], img1, atol=1e-6)
        assert torch.allclose(p[i:i + 1], p1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stage,mode", STAGE_MODES)
def test_functional_equals_module(weights_dir, stage, mode):
    case = CASES[stage]
    module = _stage(str(weights_dir), stage, case.functional_style, tuple(mode.items()))
    torch.manual_seed(2)
    x = torch.rand(2, 3, 40, 60) * case.input_scale
    with torch.no_grad():
        img, p = module(x)
        pred = module.predict(x)
    assert torch.equal(module.apply(x, pred), case.apply(x, pred, **mode))
    _same(case, pred, p)
    _same(case, img, case.apply(x, pred, **mode))


def _same(case: Case, got: torch.Tensor, want: torch.Tensor) -> None:
    if case.forward_tol is None:
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got, want, rtol=case.forward_tol[0], atol=case.forward_tol[1])


@pytest.mark.parametrize("stage,mode", STAGE_MODES)
def test_torch_export_without_graph_breaks(weights_dir, stage, mode):
    """``torch.export`` (strict: a graph break is an error) gives the module's outputs, with none of the ops the
    mobile converters lack."""
    case = CASES[stage]
    module = _stage(str(weights_dir), stage, 0, tuple(mode.items()))
    x = torch.rand(1, 3, 96, 128)
    ep = torch.export.export(module, (x,), strict=True)
    with torch.no_grad():
        ref = module(x)
    for a, b in zip(ep.module()(x), ref):
        assert torch.allclose(a, b, atol=1e-6)
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    forbidden = case.forbidden_ops + tuple(o for v in mode.values() for o in case.mode_forbidden_ops.get(v, ()))
    assert not any(f in op for op in ops for f in forbidden), ops


# ------------------------------------------------------------------------------------------------ one stage only

def test_gain_strict_load_rejects_foreign_keys(weights_dir):
    path = BuildConfig(weights_dir).photofinishing_checkpoint
    sd = read_state_dict(path)
    sd["_gain_net._net.99.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected"):
        gain_mod.load_from_state_dict(DigitalGain(), sd, path)


def test_gain_and_gtm_nets_have_the_papers_sizes():
    assert count_parameters(ScalarNet()) == 6587 and count_parameters(GTMNet()) == 28369


@pytest.mark.parametrize("size", [1, 4, 16, 32])
def test_gain_fixed_pool_equals_adaptive(size):
    torch.manual_seed(1)
    x = torch.randn(2, 5, 128, 128)
    assert torch.allclose(avg_pool_to(x, size), F.adaptive_avg_pool2d(x, size), atol=1e-6)


def test_gtm_curve_endpoints_and_monotone():
    x = torch.linspace(0, 1, 101).reshape(1, 1, 1, 101).expand(1, 3, 1, 101)
    y = apply_gtm(x, torch.tensor([[1.2, 0.08, 1e-5]]))
    # the EPS floors of the official curve keep x = 1 below 1 when b is small: (c (1 - x)) >= EPS, EPS^b > 0
    assert y[..., 0].max() < 1e-6 and 0.5 < y[..., -1].min() <= 1.0
    assert (y[..., 1:] - y[..., :-1] >= 0).all()


def test_gtm_is_the_tone_curve_of_its_params(weights_dir):
    module = _stage(str(weights_dir), "gtm", 4)
    torch.manual_seed(3)
    x = torch.rand(2, 3, 40, 60) * 1.5
    with torch.no_grad():
        img, p = module(x)
    a, b, c = (p[:, i].reshape(-1, 1, 1, 1) for i in range(3))
    _same(CASES["gtm"], img, tone_curve(x, a, b, c))


def test_gain_and_gamma_nets_are_distinct(weights_dir):
    cfg = BuildConfig(weights_dir)
    g = build_stage("gain", cfg).net.state_dict()
    m = build_stage("gamma", cfg).net.state_dict()
    assert g.keys() == m.keys()
    assert any(not torch.equal(g[k], m[k]) for k in g)
