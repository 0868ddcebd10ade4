"""The cowpath benchmark: cowpath against shutil, cp and the PyPI clone libraries.

Run it from the project root, as root (it mounts its own loop filesystems)::

    python -m bench              # the full run: updates docs/performance.md and the chart
    python -m bench --quick      # a smoke run: small tree, 64 MiB file, 2 rounds

See ``docs/performance.md`` for what each case measures and ``python -m bench
--help`` for the options.
"""
