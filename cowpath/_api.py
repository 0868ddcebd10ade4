"""The contract every OS backend implements, and the descriptor-based engine.

A backend answers one question: how to give a destination the data of a
source, cloning when it can. Everything else (same-file checks, special
files, symlinks, metadata, trees) is the shutil-shaped layer's job and is
identical on every OS.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final, Literal, Union

from ._errors import CannotClone, ReflinkNotSupportedError, with_filenames
from ._staging import Staging, create, stage, umask

if TYPE_CHECKING:
    from ._report import CopyReport

__all__ = [
    "META_MODE",
    "META_NONE",
    "META_STAT",
    "REFLINK_MODES",
    "Backend",
    "FdBackend",
    "ReflinkMode",
    "StrOrBytesPath",
    "copy_by_reading",
    "resolve_mode",
]

StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
ReflinkMode = Literal["auto", "always", "never"]
REFLINK_MODES: Final = ("auto", "always", "never")
ENV_VAR: Final = "COWPATH_REFLINK"

# Descriptor flags. O_BINARY and O_NOINHERIT exist only on Windows, O_CLOEXEC
# only on POSIX; each is 0 where it does not exist.
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)
READ_FLAGS: Final = os.O_RDONLY | _CLOEXEC | getattr(os, "O_BINARY", 0)
WRITE_FLAGS: Final = os.O_WRONLY | _CLOEXEC | getattr(os, "O_BINARY", 0)

# shutil.COPY_BUFSIZE: 1 MiB on Windows, 64 KiB elsewhere.
COPY_BUFSIZE: Final = 1024 * 1024 if os.name == "nt" else 64 * 1024


def resolve_mode(reflink: str | None) -> ReflinkMode:
    """The effective mode: the argument, else ``$COWPATH_REFLINK``, else auto."""
    source = "reflink"
    if reflink is None:
        reflink = os.environ.get(ENV_VAR) or "auto"
        source = ENV_VAR
    if reflink == "auto":
        return "auto"
    if reflink == "always":
        return "always"
    if reflink == "never":
        return "never"
    raise ValueError(f"{source} must be one of 'auto', 'always', 'never', not {reflink!r}")


def copy_by_reading(src_fd: int, dst_fd: int, bufsize: int = COPY_BUFSIZE) -> int:
    """Copy from the current offsets to end of file with read/write calls.

    The portable path, used when no kernel copy applies (and under a faked
    ``os`` module, where it goes through the fake). Returns the byte count.
    """
    total = 0
    while True:
        chunk = os.read(src_fd, bufsize)
        if not chunk:
            return total
        total += len(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view) :]


class Backend(ABC):
    """How one operating system puts a source file's data into a destination."""

    #: Short name shown by diagnostics ("linux", "macos", "windows", "portable").
    name: ClassVar[str]

    @abstractmethod
    def copy_data(
        self,
        src: StrOrBytesPath,
        dst: StrOrBytesPath,
        mode: ReflinkMode,
        report: CopyReport | None,
        metadata: int = 0,
        atomic: bool = False,
        dst_st: bool | os.stat_result | None = True,
    ) -> bool:
        """Give ``dst`` the data of ``src`` as ``shutil.copyfile`` does.

        ``src`` is followed if it is a symlink. A ``dst`` that does not
        exist is created (mode 0o666 minus the umask), filled out of sight
        and named only when complete (replacing whole a regular file that
        another copy put there meanwhile); an existing ``dst`` is rewritten in
        place (same inode; a symlink is written through), or, with
        ``atomic``, replaced whole by a new file. ``mode`` says whether to
        clone ("auto": clone if possible, else copy; "always": clone or
        raise ``ReflinkNotSupportedError``; "never": copy without any call
        that may share extents). ``metadata`` (:data:`META_NONE`,
        :data:`META_MODE`, :data:`META_STAT`) asks for shutil.copymode's or
        copystat's work as well, which a backend may do before the file is
        named; it returns True if it did, and the caller then does not
        repeat it. On any failure a destination that did not exist is not
        created, and an existing one is untouched unless the failure came
        after its old data had to be discarded (as in shutil). ``dst_st`` is
        ``os.stat(dst)`` if the caller has it (None: it does not exist),
        or True when the backend should look itself.
        """

    def copy_new_file(
        self, src: str, dst: str, mode: ReflinkMode, metadata: int, direct: bool = False
    ) -> tuple[bool, int] | None:
        """A tree copy's fast path for a new regular file; None means "use the general path"."""
        return None


class FdBackend(Backend):
    """A backend that clones and copies between open file descriptors.

    Subclasses implement :meth:`clone_fd` and may replace :meth:`copy_fd`.
    """

    #: False when the backend cannot clone at all; "auto" then skips
    #: straight to the copy and "always" fails at once.
    can_clone: ClassVar[bool] = True

    #: True where new files may be staged as unnamed O_TMPFILE files and
    #: linked through /proc/self/fd (the real Linux kernel); otherwise a
    #: private name is used.
    unnamed_staging: bool = False

    #: True where metadata may be applied through descriptors. The portable
    #: backend also serves a faked ``os`` (pyfakefs), whose fstat and
    #: descriptor calls need not agree with its path calls: it works by path.
    fd_metadata: ClassVar[bool] = True

    def clone_fd(
        self, src_fd: int, dst_fd: int, src_st: os.stat_result, dst_size: int, dst: StrOrBytesPath
    ) -> None:
        """Make ``dst_fd`` a clone of ``src_fd``, replacing all its data.

        ``dst_size`` is the destination's size before the call (0 when it
        was just created). Raise :class:`CannotClone` while the destination
        is untouched when cloning is impossible here; raise ``OSError`` for
        real failures.
        """
        raise CannotClone(errno.EOPNOTSUPP, "this platform has no clone call")

    def copy_fd(self, src_fd: int, dst_fd: int, src_st: os.stat_result, may_clone: bool) -> int:
        """Copy all data of ``src_fd`` into the empty ``dst_fd``; return the byte count.

        ``may_clone`` is false for ``reflink="never"``: no call that may
        share extents behind cowpath's back is allowed then.
        """
        return copy_by_reading(src_fd, dst_fd)

    def open_existing(self, path: StrOrBytesPath, flags: int) -> int:
        """Open a file that should exist (no O_CREAT)."""
        return os.open(path, flags)

    def copy_data(
        self,
        src: StrOrBytesPath,
        dst: StrOrBytesPath,
        mode: ReflinkMode,
        report: CopyReport | None,
        metadata: int = 0,
        atomic: bool = False,
        dst_st: bool | os.stat_result | None = True,
    ) -> bool:
        # The source is opened first, as shutil does, so that a missing or
        # unreadable source fails before the destination is touched.
        src_fd = self.open_existing(src, READ_FLAGS)
        try:
            src_st = os.fstat(src_fd)
            if stat.S_ISDIR(src_st.st_mode):
                # io.open refuses directories; os.open does not on POSIX.
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(src))
            target = dst
            if atomic and os.path.islink(dst):
                # shutil writes through a symlink; an atomic copy replaces
                # the file it points to and keeps the link.
                target = os.path.realpath(dst)
            existing: os.stat_result | None
            if not isinstance(dst_st, bool) and target is dst:
                existing = dst_st
            else:
                try:
                    existing = os.stat(target)
                except FileNotFoundError:
                    existing = None
                except (OSError, ValueError):
                    existing = _UNKNOWN  # let the direct open report it as shutil would
            if existing is None or (atomic and existing is not _UNKNOWN and stat.S_ISREG(existing.st_mode)):
                done = self._write_staged(src_fd, src_st, target, mode, src, dst, metadata, existing, True)
                if done is not None:
                    cloned, nbytes, applied = done
                    if report is not None:
                        report.record(cloned=cloned, nbytes=nbytes)
                    return applied
            cloned, nbytes = self._write_in_place(src_fd, src_st, dst, mode, src, metadata)
        finally:
            os.close(src_fd)
        if report is not None:
            report.record(cloned=cloned, nbytes=nbytes)
        return False

    def _write_staged(
        self,
        src_fd: int,
        src_st: os.stat_result,
        target: StrOrBytesPath,
        mode: ReflinkMode,
        src: StrOrBytesPath,
        dst: StrOrBytesPath,
        metadata: int,
        existing: os.stat_result | None,
        restat: bool,
        direct: bool = False,
    ) -> tuple[bool, int, bool] | None:
        """Fill a staging file and name it ``target``; None if the direct path must be taken.

        ``existing`` is the file an atomic copy replaces: then there is no
        direct path, and an error making the staging file is raised.
        """
        if direct:
            staging = create(target)
        else:
            try:
                staging = stage(target, unnamed=self.unnamed_staging, required=existing is not None)
            except OSError as exc:
                # Rewriting the destination in place instead would break the
                # promise of atomic=True: old or new content, never a mix.
                raise _callers_names(exc, src, dst) from None
        if staging is None:
            return None
        try:
            cloned, nbytes = self._fill(src_fd, staging.fd, src_st, True, mode, src, dst)
            if existing is not None:
                # Replacing a file atomically: keep what shutil keeps of it.
                _keep_identity(staging.fd, existing, metadata, target)
            meta_st = os.fstat(src_fd) if restat and metadata == META_STAT else src_st
            applied = (
                metadata != META_NONE
                and self.fd_metadata
                and _metadata_by_fd(src_fd, staging.fd, meta_st, metadata)
            )
            if staging.named and not applied and existing is None and os.chmod in os.supports_fd:
                # A named staging file is made 0600. Before it is named, give
                # it its final mode: the source's for copy/copy2 (applied
                # again by path afterwards), else what open(dst, "wb") gives.
                final = stat.S_IMODE(src_st.st_mode) if metadata != META_NONE else 0o666 & ~umask()
                os.chmod(staging.fd, final)
            try:
                committed = staging.commit(replace=existing is not None)
            except OSError as exc:
                if existing is None:
                    # Naming a new file failed (no room for one more name in
                    # the directory, a name too long, a quota): the direct
                    # path meets the error that a direct open meets, and
                    # names the destination as shutil's open does.
                    staging.discard()
                    return None
                # The error names the private file being renamed, or
                # /proc/self/fd/N: the caller knows neither.
                raise _callers_names(exc, src, dst) from None
            if not committed and not _replace_appeared(staging, target):
                staging.discard()
                return None  # something else appeared under the name: the direct path meets it
        except OSError as exc:
            staging.discard()
            raise with_filenames(exc, src, dst) from None
        except BaseException:
            staging.discard()
            raise
        return cloned, nbytes, applied

    def _write_in_place(
        self,
        src_fd: int,
        src_st: os.stat_result,
        dst: StrOrBytesPath,
        mode: ReflinkMode,
        src: StrOrBytesPath,
        metadata: int,
    ) -> tuple[bool, int]:
        plain = type(self).open_existing is FdBackend.open_existing
        dst_fd, created = _open_destination(dst, self.open_existing, plain)
        restore: int | None = None
        try:
            if created is None and metadata != META_NONE:
                restore = _narrow_mode(dst_fd, src_st)
            try:
                result = self._fill(src_fd, dst_fd, src_st, created is not None, mode, src, dst)
            except ReflinkNotSupportedError:
                if restore is not None:
                    os.chmod(dst_fd, restore)
                raise
        except BaseException:
            os.close(dst_fd)
            if created is not None:
                _remove_quietly(created)
            raise
        try:
            os.close(dst_fd)
        except OSError as exc:
            # NFS and FUSE report deferred write errors here.
            if created is not None:
                _remove_quietly(created)
            raise with_filenames(exc, src, dst) from None
        return result

    def copy_new_file(
        self, src: str, dst: str, mode: ReflinkMode, metadata: int, direct: bool = False
    ) -> tuple[bool, int] | None:
        """Copy the regular file ``src`` to ``dst``, which is not expected to exist.

        The fast path of a tree copy, with as few system calls as the
        semantics allow; the file is staged and named when complete, like
        every new destination. ``metadata`` is :data:`META_NONE`,
        :data:`META_MODE` (what ``shutil.copymode`` does) or
        :data:`META_STAT` (``shutil.copystat``, with the source's stat from
        before the copy, as shutil.copytree has it). Returns ``(cloned,
        nbytes)``, or ``None`` having changed nothing when the case is not
        that simple (the source is not a regular file or cannot be opened,
        or ``dst`` is there and is not a regular file): the caller then
        takes the general path, which also raises exactly the error shutil
        would. A regular file under ``dst`` is replaced whole: the caller
        checks first where one may be there before the copy starts. With ``direct``, ``dst``
        is created under its own name: its directory is a private staging
        directory that nobody else can enter, moved into place when done.
        """
        try:
            # O_NONBLOCK: a FIFO swapped in after the directory was listed
            # must not block the open; regular files ignore the flag.
            src_fd = self.open_existing(src, READ_FLAGS | _NONBLOCK)
        except OSError:
            return None
        try:
            src_st = os.fstat(src_fd)
            if not stat.S_ISREG(src_st.st_mode):
                return None
            done = self._write_staged(src_fd, src_st, dst, mode, src, dst, metadata, None, False, direct)
        finally:
            os.close(src_fd)
        if done is None:
            return None
        cloned, nbytes, applied = done
        if not applied and metadata != META_NONE:
            # The descriptor path met an error or cannot express this
            # platform's metadata: shutil's own function redoes the step and
            # raises precisely what shutil raises, if anything.
            if metadata == META_STAT:
                shutil.copystat(src, dst)
            else:
                shutil.copymode(src, dst)
        return cloned, nbytes

    def _fill(
        self,
        src_fd: int,
        dst_fd: int,
        src_st: os.stat_result,
        created: bool,
        mode: ReflinkMode,
        src: StrOrBytesPath,
        dst: StrOrBytesPath,
    ) -> tuple[bool, int]:
        dst_st = None if created else os.fstat(dst_fd)
        dst_size = 0 if dst_st is None else dst_st.st_size
        if mode != "never":
            try:
                if not self.can_clone:
                    raise CannotClone(errno.EOPNOTSUPP, "no clone support on this platform")
                self.clone_fd(src_fd, dst_fd, src_st, dst_size, dst)
            except CannotClone as signal:
                if mode == "always":
                    raise signal.to_error(src, dst) from None
            except OSError as exc:
                raise with_filenames(exc, src, dst) from None
            else:
                return True, src_st.st_size
        if dst_st is not None and dst_size and stat.S_ISREG(dst_st.st_mode):
            # shutil opens the destination with O_TRUNC; cowpath truncates
            # only now, once a clone has been ruled out.
            os.ftruncate(dst_fd, 0)
        try:
            return False, self.copy_fd(src_fd, dst_fd, src_st, mode != "never")
        except OSError as exc:
            raise with_filenames(exc, src, dst) from None


META_NONE: Final = 0
META_MODE: Final = 1
META_STAT: Final = 2
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
# Metadata can be applied through descriptors where utime, chmod and the
# xattr calls accept them (Linux). Where st_flags exist (BSD, macOS) there
# is no fchflags in Python, and on Windows no descriptor utime: shutil's
# path functions are used there.
_FD_METADATA: Final = (
    os.utime in os.supports_fd
    and os.chmod in os.supports_fd
    and hasattr(os, "listxattr")
    and not hasattr(os.stat_result, "st_flags")
)


def _metadata_by_fd(src_fd: int, dst_fd: int, src_st: os.stat_result, metadata: int) -> bool:
    """Apply copymode/copystat through descriptors; False when the caller must redo it by path.

    Same steps in the same order as shutil.copystat: times, then extended
    attributes (before a chmod could make the file read-only), then mode.
    The times are those of the source's stat taken before the copy, as
    shutil.copytree has them (it passes cached DirEntry stats).
    """
    # The platform test also tells the type checker that the xattr calls
    # below exist (CPython has them on Linux only).
    if not (_FD_METADATA and sys.platform.startswith("linux")):
        return False
    try:
        if metadata == META_STAT:
            os.utime(dst_fd, ns=(src_st.st_atime_ns, src_st.st_mtime_ns))
            try:
                names = os.listxattr(src_fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.ENODATA, errno.EINVAL):
                    return False
                names = []
            for name in names:
                os.setxattr(dst_fd, name, os.getxattr(src_fd, name))
        os.chmod(dst_fd, stat.S_IMODE(src_st.st_mode))
    except OSError:
        return False
    return True


# Stands for "the destination could not be examined" (a path error that the
# direct open will report exactly as shutil's open does).
_UNKNOWN: Final = os.stat_result((0,) * 10)


def _narrow_mode(dst_fd: int, src_st: os.stat_result) -> int | None:
    """Before copying into an existing file whose mode will become the source's,
    take away what the source's mode does not allow, so that no one who may
    not read the source can read its data in the destination meanwhile.
    Returns the mode to restore if the copy is refused, or None.
    """
    if os.chmod not in os.supports_fd:
        return None
    current = stat.S_IMODE(os.fstat(dst_fd).st_mode)
    narrowed = current & stat.S_IMODE(src_st.st_mode)
    if narrowed == current:
        return None
    try:
        os.chmod(dst_fd, narrowed)
    except PermissionError:
        # Another user's file that the caller may write but not chmod
        # (EPERM): shutil copies the data and then fails in copymode or
        # copystat, and so does cowpath. The mode stays the owner's.
        return None
    return current


def _keep_identity(fd: int, existing: os.stat_result, metadata: int, target: StrOrBytesPath) -> None:
    """An atomic replacement keeps the replaced file's owner (where the
    caller may give files away), and its mode where shutil keeps it
    (copyfile). Ownership goes first: chown clears setuid and setgid."""
    if hasattr(os, "fchown"):
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (existing.st_uid, existing.st_gid) and not _planted(existing, target):
            with contextlib.suppress(OSError):
                os.fchown(fd, existing.st_uid, existing.st_gid)
    if metadata == META_NONE and os.chmod in os.supports_fd:
        os.chmod(fd, stat.S_IMODE(existing.st_mode))


def _planted(existing: os.stat_result, target: StrOrBytesPath) -> bool:
    """Whether ``existing`` may have been put there by another user to receive the copy.

    The kernel's rule for fs.protected_regular (Documentation/admin-guide/
    sysctl/fs.rst): a file in a sticky directory that others may write
    (/tmp), owned neither by the caller nor by the directory's owner. Such
    a file is replaced, but its owner does not get the copy.
    """
    if sys.platform == "win32" or existing.st_uid == os.geteuid():
        return False
    try:
        directory = os.stat(os.path.dirname(os.path.realpath(target)) or ".")
    except (OSError, ValueError):
        return True
    shared = directory.st_mode & (stat.S_IWOTH | stat.S_IWGRP)
    return bool(directory.st_mode & stat.S_ISVTX and shared and existing.st_uid != directory.st_uid)


def _open_destination(
    dst: StrOrBytesPath, open_existing: Callable[[StrOrBytesPath, int], int], plain: bool
) -> tuple[int, StrOrBytesPath | None]:
    """Open ``dst`` for writing without truncating it.

    Returns the descriptor and, if this call created the file, the path to
    remove should the copy fail (None for a destination that existed).
    ``plain`` says that ``open_existing`` is a plain ``os.open``.
    """
    try:
        return os.open(dst, WRITE_FLAGS | os.O_CREAT | os.O_EXCL, 0o666), dst
    except FileExistsError:
        pass
    if os.path.islink(dst) and not os.path.exists(dst):
        # A dangling symlink: shutil's open(dst, "wb") creates the file it
        # points to, and so does cowpath; that file is what to remove on failure.
        fd = os.open(dst, WRITE_FLAGS | os.O_CREAT, 0o666)
        return fd, os.path.realpath(dst)
    if plain:
        # O_CREAT, as shutil's open(dst, "wb") has it: with it the kernel
        # refuses another user's file in a world-writable sticky directory
        # (fs.protected_regular, fs.protected_fifos: a file planted where
        # the caller meant to create one), a check an open without it skips.
        return os.open(dst, WRITE_FLAGS | os.O_CREAT, 0o666), None
    return open_existing(dst, WRITE_FLAGS), None


def _replace_appeared(staging: Staging, target: StrOrBytesPath) -> bool:
    """A file appeared under the new file's name while it was being filled.

    Another copy onto the same name finished first. Writing into that file
    in place would let several late copies truncate and rewrite it at once,
    leaving a mix of their sources; replacing it whole keeps the name one
    complete version, as if this copy had come last. Anything but a regular
    file (a directory, a symlink to write through) is left to the direct
    path, which handles it as shutil does, and so is a file that may not be
    replaced (a sticky directory).
    """
    try:
        if not stat.S_ISREG(os.lstat(target).st_mode):
            return False
        return staging.commit(replace=True)
    except OSError:
        return False


def _callers_names(exc: OSError, src: StrOrBytesPath, dst: StrOrBytesPath) -> OSError:
    """``exc`` naming ``src`` and ``dst`` instead of private paths (a staging
    file's name, /proc/self/fd/N), which mean nothing to a caller."""
    new = type(exc)(exc.errno, exc.strerror, os.fspath(src), None, os.fspath(dst))
    new.__traceback__ = exc.__traceback__
    return new


def _remove_quietly(path: StrOrBytesPath) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
