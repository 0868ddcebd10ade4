"""What `cowpath check` tells about a path's filesystem, on each OS.

Linux reads /proc/self/mountinfo (checked on the real loop mounts in
test_cli.py); macOS's answer comes from mount(8)'s output and Windows's from
two kernel32 calls, both exercised here on Linux through their inputs.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import pytest

from cowpath import _fsinfo
from cowpath._fsinfo import Mount, advice, mount_of, parse_macos_mounts, windows_volume

# As printed by /sbin/mount on macOS 14, with one mount point holding spaces.
MACOS_MOUNT = """\
/dev/disk3s1s1 on / (apfs, sealed, local, read-only, journaled)
devfs on /dev (devfs, local, nobrowse)
/dev/disk3s6 on /System/Volumes/VM (apfs, local, noexec, journaled, noatime, nobrowse)
/dev/disk3s5 on /System/Volumes/Data (apfs, local, journaled, nobrowse, protect, root data)
map auto_home on /System/Volumes/Data/home (autofs, automounted, nobrowse)
/dev/disk5s1 on /Volumes/Old Backup (hfs, local, nodev, nosuid, journaled, noowners)
/dev/disk6s1 on /Volumes/CARD (msdos, local, nodev, nosuid, noowners)
"""


@pytest.mark.parametrize(
    ("path", "point", "fstype", "device"),
    [
        ("/System/Volumes/Data/Users/me/data.bin", "/System/Volumes/Data", "apfs", "/dev/disk3s5"),
        ("/System/Volumes/Data", "/System/Volumes/Data", "apfs", "/dev/disk3s5"),
        ("/usr/bin/true", "/", "apfs", "/dev/disk3s1s1"),
        ("/Volumes/Old Backup/photos", "/Volumes/Old Backup", "hfs", "/dev/disk5s1"),
        ("/Volumes/CARD", "/Volumes/CARD", "msdos", "/dev/disk6s1"),
        ("/Volumes/CARDS/x", "/", "apfs", "/dev/disk3s1s1"),
    ],
)
def test_macos_mount_is_the_longest_mount_point_holding_the_path(
    path: str, point: str, fstype: str, device: str
) -> None:
    assert parse_macos_mounts(MACOS_MOUNT, path) == Mount(point, fstype, device)


def test_macos_mount_output_without_a_match() -> None:
    assert parse_macos_mounts("", "/x") is None
    assert parse_macos_mounts("garbage line\n", "/x") is None


class FakeKernel32:
    """GetVolumePathNameW and GetVolumeInformationW over a table of volumes.

    Each fills the caller's wide-character buffer as Windows does, and
    refuses a buffer too small for the answer.
    """

    def __init__(self, volumes: dict[str, str]) -> None:
        self.volumes = volumes  # volume root -> file system name

    def GetVolumePathNameW(self, path: str, buffer: ctypes.Array[ctypes.c_wchar], size: int) -> int:
        roots = [root for root in self.volumes if path.lower().startswith(root.lower())]
        if not roots:
            return 0
        root = max(roots, key=len)
        if len(root) + 1 > size:
            return 0
        buffer.value = root
        return 1

    def GetVolumeInformationW(
        self,
        root: str,
        name: None,
        name_size: int,
        serial: None,
        longest: None,
        flags: None,
        fstype: ctypes.Array[ctypes.c_wchar],
        fstype_size: int,
    ) -> int:
        if root not in self.volumes or len(self.volumes[root]) + 1 > fstype_size:
            return 0
        fstype.value = self.volumes[root]
        return 1


@pytest.mark.skipif(sys.platform == "win32", reason="the POSIX spelling of an absolute path")
def test_windows_volume_names_the_volume_and_its_file_system() -> None:
    kernel32 = FakeKernel32({"/": "NTFS", "/dev-drive/": "ReFS"})
    assert windows_volume("/dev-drive/src/model.bin", kernel32) == Mount("/dev-drive/", "refs", "/dev-drive/")
    assert windows_volume("/home/x", kernel32) == Mount("/", "ntfs", "/")


def test_windows_volume_unknown_when_windows_says_no() -> None:
    assert windows_volume("/anything", FakeKernel32({})) is None
    assert windows_volume("/anything", FakeKernel32({"/": "X" * 300})) is None


def test_mount_of_on_this_system(tmp_path: Path) -> None:
    found = mount_of(str(tmp_path))
    if not sys.platform.startswith(("linux", "darwin", "win32")):
        assert found is None
        return
    assert found is not None
    assert found.fstype
    real = os.path.realpath(tmp_path)
    if sys.platform == "win32":
        assert real.lower().startswith(found.point.lower())
    else:
        # The mount point holds the path, and no other mount lies between.
        assert _fsinfo._inside(real, found.point)
        assert os.stat(found.point).st_dev == os.stat(real).st_dev


@pytest.mark.parametrize(
    ("fstype", "words"),
    [("apfs", "one APFS volume"), ("hfs", "Clones need APFS"), ("refs", "Dev Drive"), ("fat32", "FAT")],
)
def test_advice_for_the_macos_and_windows_filesystems(fstype: str, words: str) -> None:
    assert words in advice(Mount("/v", fstype, "/dev/v"), None, True)


@pytest.mark.parametrize(
    ("platform", "words"),
    [("linux", "btrfs or XFS"), ("darwin", "the same APFS volume"), ("win32", "the same ReFS volume")],
)
def test_crossing_filesystems_advice_names_this_os_cloning_filesystem(
    monkeypatch: pytest.MonkeyPatch, platform: str, words: str
) -> None:
    monkeypatch.setattr(_fsinfo.sys, "platform", platform)
    said = advice(Mount("/a", "apfs", "d1"), Mount("/b", "apfs", "d2"), False)
    assert "different filesystems" in said
    assert words in said
