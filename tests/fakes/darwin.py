"""Darwin constants that only the tests use; cowpath._libsystem holds those cowpath uses."""

from __future__ import annotations

from typing import Final

__all__ = ["CLONE_ACL", "SF_ARCHIVED", "UF_HIDDEN", "UF_NODUMP", "UF_TRACKED"]

# <sys/clonefile.h>, macOS 12.6+: cowpath never passes it (see cowpath._libsystem);
# the fake kernel accepts it, as the real one does.
CLONE_ACL: Final = 0x0004

# <sys/stat.h> file flags (st_flags, chflags(2)) that cowpath gives no meaning
# of its own: it clears them, or copies them as shutil.copystat does.
UF_NODUMP: Final = 0x00000001
UF_TRACKED: Final = 0x00000040
UF_HIDDEN: Final = 0x00008000
SF_ARCHIVED: Final = 0x00010000
