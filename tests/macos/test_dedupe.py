"""macOS has no dedupe call and no per-file map that proves sharing: cowpath refuses, clearly."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import cowpath
from cowpath._cli import main
from tests.dedupeutil import assert_refused, pattern, write
from tests.fakes.libsystem import FakeLibSystem


def test_dedupe_refuses_and_changes_nothing(fake: FakeLibSystem, tmp_path: Path) -> None:
    a, b = write(tmp_path / "a", pattern(10000)), write(tmp_path / "b", pattern(10000))
    assert_refused(a, b, errno.EOPNOTSUPP)
    assert fake.calls == []  # nothing was cloned, renamed or replaced


def test_shared_bytes_refuses(fake: FakeLibSystem, tmp_path: Path) -> None:
    a, b = write(tmp_path / "a", b"x"), write(tmp_path / "b", b"x")
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        cowpath.shared_bytes(a, b)
    assert caught.value.errno == errno.EOPNOTSUPP


def test_the_commands_report_each_file_and_exit_1(
    fake: FakeLibSystem, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        write(tmp_path / name, pattern(5000))
    assert main(["dedupe", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert sorted(err.splitlines()) == [
        f"cowpath: cannot dedupe '{tmp_path / name}': Operation not supported "
        "(this filesystem cannot share identical data)"
        for name in ("a", "b")
    ]
    assert main(["du", "-s", str(tmp_path)]) == 1
    assert "Traceback" not in capsys.readouterr().err
