# Sourced by the device checks that test what a user installs: a clean
# environment (no moelora library or table paths, an empty kernel cache), an
# empty folder `site` for the wheel, and the step/check helpers (`check` runs
# a command and records a failure in `status`). Prints the card first.
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
site=$(mktemp -d)/site
unset LD_LIBRARY_PATH MOELORA_LIB MOELORA_TUNED_DIR MOELORA_TUNED_TABLE MOELORA_BUNDLE
export MOELORA_CACHE_DIR=$(mktemp -d)/moelora-cache PYTHONUNBUFFERED=1
status=0
step() { echo; echo "=== $* ($(date +%T))"; }
check() { "$@" || { echo "FAILED ($?): $*"; status=1; }; }
step card
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"
