"""Windows has no dedupe call, and ReFS cluster runs do not prove sharing: cowpath refuses, clearly."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import cowpath
from cowpath._cli import main
from cowpath._select import use_backend
from cowpath._windows import WindowsBackend
from tests.dedupeutil import pattern, record, write
from tests.fakes.kernel32 import FakeKernel32


def test_dedupe_and_shared_bytes_refuse_on_refs(
    backend: WindowsBackend, fake: FakeKernel32, refs: Path
) -> None:
    a, b = write(refs / "a", pattern(70000)), write(refs / "b", pattern(70000))
    before = record(a), record(b)
    with use_backend(backend):
        with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
            cowpath.dedupe(a, b)
        with pytest.raises(cowpath.ReflinkNotSupportedError) as unknown:
            cowpath.shared_bytes(a, b)
    assert caught.value.errno == unknown.value.errno == errno.EOPNOTSUPP
    assert (caught.value.filename, caught.value.filename2) == (str(a), str(b))
    assert (record(a), record(b)) == before
    assert fake.names() == []  # no call reached kernel32: nothing was cloned or replaced


def test_the_command_reports_each_file_and_exits_1(
    backend: WindowsBackend, refs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        write(refs / name, pattern(5000))
    with use_backend(backend):
        assert main(["dedupe", "-r", str(refs)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 2
    assert "Traceback" not in err
