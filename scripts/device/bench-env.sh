# Sourced by the device scripts that run the carried benchmark or profile it:
# the carried libraries and bench cache, the output folder, a work folder W
# and ncu's path (empty where it is not installed).
set -uo pipefail
export LD_LIBRARY_PATH="$PWD/.carry/lib:${LD_LIBRARY_PATH:-}"
export MOELORA_CACHE_DIR="$PWD/.carry/bench-cache"
OUT=${OUT:-/tmp/out}
W=$(mktemp -d)
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
