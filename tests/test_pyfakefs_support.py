"""Inside a test suite that uses pyfakefs, cowpath copies within the fake filesystem."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import cowpath

pyfakefs = pytest.importorskip("pyfakefs.fake_filesystem_unittest")


def test_every_function_copies_in_the_fake_filesystem() -> None:
    real_dir = tempfile.mkdtemp(prefix="cowpath-real-")
    try:
        with pyfakefs.Patcher() as patcher:
            fs = patcher.fs
            fs.create_file("/data/src.bin", contents=b"fake data " * 5000)
            os.chmod("/data/src.bin", 0o751)
            os.utime("/data/src.bin", (1_000_000, 2_000_000))
            report = cowpath.CopyReport()
            assert cowpath.copyfile("/data/src.bin", "/data/a") == "/data/a"
            assert cowpath.copy("/data/src.bin", "/data/b") == "/data/b"
            assert cowpath.copy2("/data/src.bin", "/data/c", report=report) == "/data/c"
            for name in ("a", "b", "c"):
                with open(f"/data/{name}", "rb") as f:
                    assert f.read() == b"fake data " * 5000
            assert os.stat("/data/b").st_mode & 0o777 == 0o751
            assert os.stat("/data/src.bin").st_mode & 0o777 == 0o751, "the source was changed"
            os.chmod("/data/a", 0o600)
            cowpath.copyfile("/data/src.bin", "/data/a")  # in place: keeps its mode
            assert os.stat("/data/a").st_mode & 0o777 == 0o600
            assert os.stat("/data/c").st_mtime == 2_000_000
            # Nothing in the fake filesystem can be cloned, and nothing
            # claims to have been.
            assert (report.files_cloned, report.files_copied) == (0, 1)
            with pytest.raises(cowpath.ReflinkNotSupportedError):
                cowpath.reflink("/data/src.bin", "/data/d")
            assert not os.path.exists("/data/d")
            assert cowpath.supports_reflink("/data") is False

            os.makedirs("/tree/sub")
            for i in range(40):  # enough files to start the thread pool
                fs.create_file(f"/tree/sub/f{i}", contents=str(i) * (i + 1))
            cowpath.copytree("/tree", "/tree-copy")
            for i in range(40):
                with open(f"/tree-copy/sub/f{i}") as f:
                    assert f.read() == str(i) * (i + 1)
            assert sorted(os.listdir("/tree-copy")) == ["sub"]  # no staging left behind

            copied = cowpath.CowPath("/data/src.bin").copy("/data/e", preserve_metadata=True)
            assert isinstance(copied, cowpath.CowPath)
            # Read with open(): on Python 3.10 pathlib's own methods bypass
            # pyfakefs (its accessor keeps the real os functions).
            with open("/data/e", "rb") as f:
                assert f.read() == b"fake data " * 5000
            assert os.stat("/data/e").st_mtime == 2_000_000
            os.makedirs("/tree2/a/b")
            fs.create_file("/tree2/a/b/c", contents=b"deep")
            cowpath.CowPath("/tree2").copy("/tree3")
            with open("/tree3/a/b/c", "rb") as f:
                assert f.read() == b"deep"
            # The real filesystem is not touched, even at a path that exists there.
            fs.create_dir(real_dir)
            cowpath.copyfile("/data/src.bin", os.path.join(real_dir, "x"))
        assert os.listdir(real_dir) == []
    finally:
        os.rmdir(real_dir)


def test_pyfakefs_fixture(fs: object) -> None:
    Path("/one").write_text("one")
    cowpath.copy2("/one", "/two")
    assert Path("/two").read_text() == "one"
