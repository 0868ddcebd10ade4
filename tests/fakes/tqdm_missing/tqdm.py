"""tqdm as it is when not installed, whatever the environment has: for tests/test_cli_progress.py."""

raise ImportError("No module named 'tqdm'")
