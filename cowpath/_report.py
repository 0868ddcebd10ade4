"""What a copy or move did: how many files and bytes were cloned, copied or renamed."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["CopyReport"]


@dataclass
class CopyReport:
    """Counts of what one or more copies did.

    Pass an instance as ``report=`` to any cowpath copy function; it is
    updated as each regular file's data is written (a tree adds up every
    file). Nothing is counted, and nothing costs anything, when no report is
    passed. One report may be shared by several calls and threads.

    ``files_cloned``/``bytes_cloned`` count files whose data now shares the
    source's extents (a clone: no data was read or written).
    ``files_copied``/``bytes_copied`` count files whose data was copied;
    the kernel may still share extents for some of them on its own (Linux
    ``copy_file_range`` on btrfs, XFS and NFS does), which cowpath cannot
    observe, so they are counted as copies.

    ``files_renamed``/``bytes_renamed`` count the regular files that
    :func:`cowpath.move` moved by renaming them (or a directory holding
    them): their data was neither cloned nor copied, and they are not
    counted in :attr:`files` or :attr:`bytes`.
    """

    files_cloned: int = 0
    """Files whose data now shares the source's storage: cloned, no data read or written."""
    bytes_cloned: int = 0
    """The size of the cloned files, in bytes."""
    files_copied: int = 0
    """Files whose data was read and written (where cloning was not possible, or ``reflink="never"``)."""
    bytes_copied: int = 0
    """The size of the copied files, in bytes."""
    files_renamed: int = 0
    """Regular files :func:`cowpath.move` moved by a rename (alone or inside a renamed directory)."""
    bytes_renamed: int = 0
    """The size of the renamed files, in bytes."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def files(self) -> int:
        """Files whose data was written, cloned or copied."""
        return self.files_cloned + self.files_copied

    @property
    def bytes(self) -> int:
        """Bytes of file data written, cloned or copied."""
        return self.bytes_cloned + self.bytes_copied

    def record(self, *, cloned: bool, nbytes: int) -> None:
        """Count one file. Called by cowpath; safe from several threads."""
        with self._lock:
            if cloned:
                self.files_cloned += 1
                self.bytes_cloned += nbytes
            else:
                self.files_copied += 1
                self.bytes_copied += nbytes

    def record_renamed(self, files: int, nbytes: int) -> None:
        """Count ``files`` regular files of ``nbytes`` moved by a rename. Called by cowpath."""
        with self._lock:
            self.files_renamed += files
            self.bytes_renamed += nbytes

    def merge(self, other: CopyReport) -> None:
        """Add the counts of ``other`` to this report."""
        with self._lock:
            self.files_cloned += other.files_cloned
            self.bytes_cloned += other.bytes_cloned
            self.files_copied += other.files_copied
            self.bytes_copied += other.bytes_copied
            self.files_renamed += other.files_renamed
            self.bytes_renamed += other.bytes_renamed
