"""Fakes of the OS seams (kernel32, libSystem) that act on real files."""
