"""The engine: one file's copy, the same on every OS, around the backend's system calls.

The ladder, for every file, as CPython's shutil.copyfile has it around its
fast paths:

1. shutil's checks (:func:`copy_file`): the same file, special files, a
   symlink copied as a link.
2. The backend's route: an OS whole-file copy where it is the better call
   (CopyFile2 for copy2 on Windows); the engine if it declines.
3. Open the source. A new destination (or, with ``atomic``, an existing
   regular file) is filled in a staging file and named when whole; any
   other existing destination is written in place, as shutil does.
4. Clone if the mode allows: :meth:`Backend.clone_new` or
   :meth:`Backend.clone`. A backend that cannot raises
   :class:`CannotClone` while the destination is untouched; "always" then
   fails with :class:`ReflinkNotSupportedError`, anything else copies.
5. Metadata (copymode's or copystat's work) by descriptor before the file
   is named where the OS allows, else by path once it is.

Every ``OSError`` leaving the engine passes :func:`cowpath._errors.named`
once, at :func:`transfer`'s boundary.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import stat
from dataclasses import replace
from typing import Final

from ._backend import Backend, FileJob, Route, Source, Transfer
from ._common import READ_FLAGS, WRITE_FLAGS, Metadata, StrOrBytesPath, remove_quietly
from ._errors import CannotClone, named
from ._metadata import apply_by_fd, apply_by_path, keep_identity, narrow_mode
from ._staging import NEW_FILE, Staging, create, private_name, stage, umask

__all__ = ["copy_new_file", "transfer"]

_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)


class _Dest(enum.Enum):
    """What is under the destination's name before the copy."""

    NEW = "new"  # nothing
    FILE = "file"  # a regular file
    OTHER = "other"  # anything else, or it cannot be examined: a direct open says what


def transfer(backend: Backend, job: FileJob) -> None:
    """Give ``job.dst`` the data, and the metadata ``job.metadata`` asks for, of ``job.src``.

    ``src`` is followed if it is a symlink. A ``dst`` that does not exist
    is created (mode 0o666 minus the umask), filled out of sight and named
    only when complete (replacing whole a regular file that another copy
    put there meanwhile); an existing ``dst`` is rewritten in place (same
    inode; a symlink is written through), or, with ``atomic``, replaced
    whole by a new file. On any failure a destination that did not exist
    is not created, and an existing one is untouched unless the failure
    came after its old data had to be discarded (as in shutil).
    """
    try:
        route = backend.route(job)
        if route is Route.ENGINE or not _native(backend, job, route):
            _engine_copy(backend, job)
    except CannotClone as signal:
        raise signal.to_error(job.src, job.dst) from None
    except OSError as exc:
        raise named(exc, job.src, job.dst, tuple(job.private)) from None
    _finish_by_path(job)


def _finish_by_path(job: FileJob) -> None:
    if job.by_path:
        # The descriptor path met an error or cannot express this
        # platform's metadata: shutil's own function does the step, and
        # raises precisely what shutil raises, if anything.
        apply_by_path(job.src, job.dst, job.metadata)


def copy_new_file(backend: Backend, job: FileJob) -> bool:
    """A tree copy's fast path for a new regular file; False, having changed nothing, if it does not apply.

    With as few system calls as the semantics allow: no shutil checks (the
    tree walk has made them), one open of the source (``O_NONBLOCK``: a
    FIFO swapped in after the listing must not block), a staging file, the
    metadata by descriptor. It does not apply when the backend routes the
    file elsewhere, the source is not a regular file or cannot be opened,
    or ``job.dst`` cannot be created: the tree's general path, cowpath's
    own copy function, then also raises exactly the error shutil would.
    """
    if backend.route(job) is not Route.ENGINE or not backend.can_stage(job.dst):
        return False
    try:
        src_fd = backend.open(job.src, READ_FLAGS | _NONBLOCK)
    except OSError:
        return False
    try:
        src_st = os.fstat(src_fd)
        if not stat.S_ISREG(src_st.st_mode):
            return False
        source = Source(job, src_fd, src_st)
        if job.direct and not backend.clones_new_files:
            if not _write_direct(backend, source):
                return False
        elif not _write_staged(backend, source, job.dst, None, restat=False):
            return False
        job.src_st = src_st
    except CannotClone as signal:
        raise signal.to_error(job.src, job.dst) from None
    except OSError as exc:
        raise named(exc, job.src, job.dst, tuple(job.private)) from None
    finally:
        os.close(src_fd)
    if job.by_path:
        _finish_by_path(job)
    return True


def _native(backend: Backend, job: FileJob, route: Route) -> bool:
    """The OS's whole-file copy, after a clone attempt with CLONE_THEN_NATIVE; False: the engine copies."""
    if route is Route.CLONE_THEN_NATIVE:
        attempt = replace(job, mode="always")
        try:
            _engine_copy(backend, attempt)
        except CannotClone:
            pass  # the destination is as it was
        else:
            job.nbytes, job.by_path = attempt.nbytes, attempt.by_path
            return True
    nbytes = os.stat(job.src).st_size
    if not backend.native_copy(job, replace=job.atomic):
        return False
    job.nbytes = nbytes
    if job.report is not None:
        # The OS does not say whether its copy cloned: it counts as a copy.
        job.report.record(cloned=False, nbytes=nbytes)
    return True


def _examine(job: FileJob, target: StrOrBytesPath) -> tuple[_Dest, os.stat_result | None]:
    st: os.stat_result | None
    if job.dst_known and target is job.dst:
        st = job.dst_st
    else:
        try:
            st = os.stat(target)
        except FileNotFoundError:
            st = None
        except (OSError, ValueError):
            return _Dest.OTHER, None  # the direct open reports it as shutil's would
    if st is None:
        return _Dest.NEW, None
    return (_Dest.FILE if stat.S_ISREG(st.st_mode) else _Dest.OTHER), st


def _engine_copy(backend: Backend, job: FileJob) -> None:
    # The source is opened first, as shutil does, so that a missing or
    # unreadable source fails before the destination is touched.
    src_fd = backend.open(job.src, READ_FLAGS)
    try:
        src_st = os.fstat(src_fd)
        if stat.S_ISDIR(src_st.st_mode):
            # io.open refuses directories; os.open does not on POSIX.
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(job.src))
        source = Source(job, src_fd, src_st)
        # A stream (Windows) is opened, and created, where it is, as
        # shutil's open(dst, "wb") does; it has no name of its own to stage.
        if backend.can_stage(job.dst) and _staged(backend, source):
            return
        _write_in_place(backend, source)
    finally:
        os.close(src_fd)
    job.by_path = job.metadata is not Metadata.NONE  # after the data, as shutil does


def _staged(backend: Backend, source: Source) -> bool:
    """Copy into a staging file where the destination is new (or replaced whole); False: write in place."""
    job = source.job
    target = job.dst
    if job.atomic and os.path.islink(target):
        # shutil writes through a symlink; an atomic copy replaces the
        # file it points to and keeps the link.
        target = os.path.realpath(target)
    kind, st = _examine(job, target)
    if kind is _Dest.NEW and target is job.dst and os.path.islink(target):
        # A dangling symlink: shutil's open(dst, "wb") creates the file it
        # points to, or fails (its directory is missing) before any data is
        # read. The direct path does the same; a staging file would be
        # filled first, and then could not take the link's name.
        return False
    if kind is _Dest.NEW or (job.atomic and kind is _Dest.FILE):
        # shutil.copystat stats a path after the copy (its read may have
        # updated the access time), but uses a DirEntry's cached stat, taken
        # before the data is read (copytree).
        restat = not isinstance(job.src, os.DirEntry)
        return _write_staged(backend, source, target, st if kind is _Dest.FILE else None, restat)
    return False


def _final_mode(source: Source, replacing: os.stat_result | None) -> int:
    """The mode a new file ends with: the source's (copy, copy2), the replaced file's, or open()'s."""
    if source.job.metadata is not Metadata.NONE:
        return stat.S_IMODE(source.st.st_mode)
    if replacing is not None:
        return stat.S_IMODE(replacing.st_mode)
    return 0o666 & ~umask()


def _write_staged(
    backend: Backend, source: Source, target: StrOrBytesPath, replacing: os.stat_result | None, restat: bool
) -> bool:
    """Fill a staging file and name it ``target``; False if the direct path must be taken.

    ``replacing`` is the file an atomic copy replaces: then there is no
    direct path, and an error making the staging file is raised.
    """
    job = source.job
    staging: Staging | None = None
    cloned = False
    if backend.clones_new_files and job.mode != "never":
        try:
            staging = _clone_new(backend, source, target, _final_mode(source, replacing))
            cloned = True
        except CannotClone as signal:
            if job.mode == "always" and not signal.path_error:
                raise
        if staging is None and job.direct and os.path.lexists(target):
            return False  # the name exists: the tree copy's general path reports it as shutil would
    if staging is None:
        if job.direct:
            staging = create(target)
        else:
            # Rewriting the destination in place instead would break the
            # promise of atomic=True: old or new content, never a mix. The
            # error then names the caller's files, not the directory the
            # staging file was to be made in.
            if replacing is not None:
                job.private.append(os.path.dirname(os.fspath(target)) or ".")
            staging = stage(target, unnamed=backend.unnamed_staging, required=replacing is not None)
        if staging is None:
            return False
        if staging.path is not None and not job.direct:
            job.private.append(staging.path)
    from_clone = cloned
    try:
        if cloned:
            nbytes = source.st.st_size
        else:
            cloned, nbytes = _fill(backend, Transfer(source, staging.fd, 0, target))
        if replacing is not None:
            # Replacing a file atomically: keep what shutil keeps of it.
            keep_identity(staging.fd, replacing, job.metadata, target)
        meta_st = os.fstat(source.fd) if restat and job.metadata is Metadata.STAT else source.st
        applied = job.metadata is Metadata.NONE or apply_by_fd(
            backend, source.fd, staging.fd, meta_st, job.metadata
        )
        unset = job.metadata is Metadata.NONE or not applied
        if (staging.named or from_clone) and unset and replacing is None and os.chmod in os.supports_fd:
            # A named staging file is made 0600, a clone has (no more than)
            # the source's mode. Before it is named, give it its final mode
            # (applied again by path afterwards if the descriptor path failed).
            os.chmod(staging.fd, _final_mode(source, None))
        try:
            committed = staging.commit(replace=replacing is not None)
        except OSError:
            if replacing is None and not from_clone:
                # Naming a new file failed (no room for one more name in
                # the directory, a name too long, a quota): the direct
                # path meets the error that a direct open meets, and names
                # the destination as shutil's open does.
                staging.discard()
                return False
            raise
        if not committed and not _replace_appeared(staging, target):
            staging.discard()
            return False  # something else appeared under the name: the direct path meets it
    except BaseException:
        staging.discard()
        raise
    job.nbytes = nbytes
    if job.report is not None:
        job.report.record(cloned=cloned, nbytes=nbytes)
    job.by_path = not applied
    return True


def _write_direct(backend: Backend, source: Source) -> bool:
    """A tree's new file in its private directory, made under its own name; False if it cannot be created.

    Nobody else can enter that directory (:mod:`cowpath._treestage`), so
    the file needs no staging name: it is created, filled, given its
    metadata by descriptor and closed, with no more than those system
    calls. If it cannot be created, nothing is: the tree's general path
    then meets the error shutil would.
    """
    job = source.job
    try:
        fd = os.open(job.dst, NEW_FILE, 0o666)
    except OSError:
        return False
    try:
        cloned, nbytes = _fill(backend, Transfer(source, fd, 0, job.dst))
        metadata = job.metadata
        applied = metadata is Metadata.NONE or apply_by_fd(backend, source.fd, fd, source.st, metadata)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        remove_quietly(job.dst)
        raise
    # A deferred write error (NFS, FUSE) is raised here; the file keeps its name, as a staged one does.
    os.close(fd)
    job.nbytes = nbytes
    if job.report is not None:
        job.report.record(cloned=cloned, nbytes=nbytes)
    job.by_path = not applied
    return True


def _clone_new(backend: Backend, source: Source, target: StrOrBytesPath, mode: int) -> Staging | None:
    """The backend's clone under a private name beside ``target`` (or ``target`` itself in a tree)."""
    job = source.job
    names = [target] if job.direct else [private_name(target) for _ in range(8)]
    for path in names:
        if not job.direct:
            job.private.append(path)
        try:
            fd = backend.clone_new(source, path, mode)
        except FileExistsError:
            continue  # a taken private name: draw another (with direct, the tree's general path)
        return Staging(fd, target, path, direct=job.direct)
    if job.direct:
        return None
    raise FileExistsError(errno.EEXIST, "no free staging name", os.fsdecode(target))


def _write_in_place(backend: Backend, source: Source) -> None:
    job = source.job
    dst_fd, created = _open_destination(backend, job.dst)
    restore: int | None = None
    try:
        if created is None and job.metadata is not Metadata.NONE:
            restore = narrow_mode(dst_fd, source.st)
        try:
            cloned, nbytes = _fill(backend, Transfer(source, dst_fd, -1, job.dst))
        except CannotClone:
            if restore is not None:
                os.chmod(dst_fd, restore)
            raise
    except BaseException:
        os.close(dst_fd)
        if created is not None:
            remove_quietly(created)
        raise
    try:
        os.close(dst_fd)
    except OSError:
        # NFS and FUSE report deferred write errors here.
        if created is not None:
            remove_quietly(created)
        raise
    job.nbytes = nbytes
    if job.report is not None:
        job.report.record(cloned=cloned, nbytes=nbytes)


def _open_destination(backend: Backend, dst: StrOrBytesPath) -> tuple[int, StrOrBytesPath | None]:
    """Open ``dst`` for writing without truncating it.

    Returns the descriptor and, if this call created the file, the path to
    remove should the copy fail (None for a destination that existed).
    """
    try:
        return backend.open(dst, WRITE_FLAGS | os.O_CREAT | os.O_EXCL), dst
    except FileExistsError:
        pass
    if os.path.islink(dst) and not os.path.exists(dst):
        # A dangling symlink: shutil's open(dst, "wb") creates the file it
        # points to, and so does cowpath; that file is what to remove on failure.
        return backend.open(dst, WRITE_FLAGS | os.O_CREAT), os.path.realpath(dst)
    # O_CREAT, as shutil's open(dst, "wb") has it: with it the kernel
    # refuses another user's file in a world-writable sticky directory
    # (fs.protected_regular, fs.protected_fifos: a file planted where the
    # caller meant to create one), a check an open without it skips.
    return backend.open(dst, WRITE_FLAGS | os.O_CREAT), None


def _fill(backend: Backend, transfer: Transfer) -> tuple[bool, int]:
    """Clone or copy into the open destination; (cloned, bytes). ``dst_size`` -1: look."""
    job = transfer.job
    dst_st = None if transfer.dst_size == 0 else os.fstat(transfer.dst_fd)
    if dst_st is not None:
        transfer.dst_size = dst_st.st_size
    if job.mode != "never":
        try:
            backend.clone(transfer)
        except CannotClone:
            if job.mode == "always":
                raise
        else:
            if dst_st is not None and not transfer.src_st.st_size and stat.S_ISREG(dst_st.st_mode):
                # Cloning an empty file changes nothing; shutil's O_TRUNC
                # would still have updated the destination's mtime and
                # cleared its setuid and setgid bits.
                os.ftruncate(transfer.dst_fd, 0)
            return True, transfer.src_st.st_size
    if dst_st is not None and stat.S_ISREG(dst_st.st_mode):
        # shutil opens the destination with O_TRUNC; cowpath truncates
        # only now, once a clone has been ruled out. Even an empty
        # destination: like O_TRUNC, ftruncate(2) updates its mtime and
        # clears setuid and setgid when nothing else will be written.
        os.ftruncate(transfer.dst_fd, 0)
        transfer.dst_size = 0
    return False, backend.copy(transfer, job.mode != "never")


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
