"""isp.atomic: the one atomic writer (bytes, a writer callback, a file or folder at a temporary path, a folder)."""
from __future__ import annotations

import errno

import pytest

from isp import atomic


def test_write_atomic_and_bytes(tmp_path):
    p = atomic.write_atomic(tmp_path / "sub" / "a.bin", lambda f: f.write(b"abc"))
    assert p.read_bytes() == b"abc"
    atomic.write_bytes_atomic(p, b"xyz")
    assert p.read_bytes() == b"xyz" and sorted(x.name for x in p.parent.iterdir()) == ["a.bin"]


def test_failure_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")

    def full(_f):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match=r"disk full: could not write the table .*a\.bin") as exc:
        atomic.write_atomic(p, full, what="the table ")
    assert exc.value.errno == errno.ENOSPC
    assert p.read_bytes() == b"old" and [x.name for x in tmp_path.iterdir()] == ["a.bin"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic.write_bytes_atomic(tmp_path / "missing" / "b", b"", make_parents=False)


def test_replace_path_file_and_folder(tmp_path):
    f = atomic.replace_path(tmp_path / "m.onnx", lambda t: t.write_text("1"))
    assert f.read_text() == "1"
    d = tmp_path / "m.mlpackage"
    atomic.replace_path(d, lambda t: (t.mkdir(), (t / "x").write_text("a")))
    atomic.replace_path(d, lambda t: (t.mkdir(), (t / "y").write_text("b")))
    assert [x.name for x in d.iterdir()] == ["y"]
    with pytest.raises(FileNotFoundError, match="did not create"):
        atomic.replace_path(tmp_path / "n.onnx", lambda t: None)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.mlpackage", "m.onnx"]


def test_publish_dir(tmp_path):
    a, target = tmp_path / "a", tmp_path / "t"
    a.mkdir()
    (a / "1").write_text("one")
    atomic.publish_dir(a, target)
    b = tmp_path / "b"
    b.mkdir()
    with pytest.raises(FileExistsError):
        atomic.publish_dir(b, target, replace=False)
    atomic.publish_dir(b, target)
    assert list(target.iterdir()) == [] and sorted(x.name for x in tmp_path.iterdir()) == ["t"]
