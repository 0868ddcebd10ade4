"""When the suite runs against an installed wheel, it really tests the installed package.

``tools/wheel_test.sh`` installs the built wheel in a fresh virtual
environment, copies the tests away from the source tree and sets
``COWPATH_EXPECT_INSTALLED=1``: then ``cowpath`` must come from that
environment's site-packages, with every file a user gets. Without the
variable (a run from the checkout) these tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import cowpath

pytestmark = pytest.mark.skipif(
    os.environ.get("COWPATH_EXPECT_INSTALLED") != "1",
    reason="only against an installed wheel (COWPATH_EXPECT_INSTALLED=1, set by tools/wheel_test.sh)",
)

PACKAGE = Path(cowpath.__file__).resolve().parent


def test_cowpath_is_imported_from_site_packages() -> None:
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert PACKAGE.parent == site_packages, f"cowpath imported from {PACKAGE}, not {site_packages}"
    assert Path(sys.prefix).resolve() in PACKAGE.parents


def test_wheel_has_every_module_and_the_type_marker() -> None:
    # Each public name resolves to a module inside the installed package.
    for name in cowpath.__all__:
        module = getattr(getattr(cowpath, name), "__module__", "")
        assert module.startswith(("cowpath", "shutil")), (name, module)
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "__main__.py").is_file()


def test_console_script_is_installed() -> None:
    script = shutil.which("cowpath", path=sysconfig.get_paths()["scripts"])
    assert script is not None, "the cowpath command is not in the environment's scripts"
    done = subprocess.run([script, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cowpath {cowpath.__version__}"
