"""`python -m isp params`: counts read from the checkpoints match the official release."""
import json

from isp.cli import main


def test_params_table(tmp_path, weights_dir, capsys):
    out = tmp_path / "params.json"
    assert main(["params", "--weights", str(weights_dir), "--json", str(out)]) == 0
    rows = {(r["stage"], r["variant"]): r["params"] for r in json.loads(out.read_text())}
    assert rows[("denoise", "s24_lite")] == 245_223 and rows[("denoise", "generic_base")] == 932_683
    assert rows[("enhance", "enhancement_s24-style-0")] == 50_635
    assert rows[("lut3d", "photofinishing_s24-style-1-lut")] == 3_993
    large = next(v for (s, var), v in rows.items() if s == "denoise" and var.startswith("large"))
    assert 3_500_000 < large < 3_700_000          # paper: ~3.6 M
    assert rows[("linearize", "cie_xyz_net")] == 693_493
    assert all(rows[("raw_jpeg_encode", f"raw_jpeg_adapter_q_{q}")] == 32_076 for q in (25, 50, 75, 95))
    assert rows[("raw_jpeg_decode", "(no weights)")] == 0
    assert "207,224" in capsys.readouterr().out   # photofinishing total, style 0
