# Sourced by the device scripts that run the carried benchmark or profile it:
# the carried libraries and bench cache, the output folder, a work folder W
# and ncu's path (empty where it is not installed).
set -uo pipefail
# BENCH_DIR (default .carry) holds bin/moelora-bench and bench-cache/ (a
# staged candidate: .carry/<name>).
BENCH_DIR=${BENCH_DIR:-.carry}
export LD_LIBRARY_PATH="$PWD/.carry/lib:${LD_LIBRARY_PATH:-}"
export MOELORA_CACHE_DIR="$PWD/$BENCH_DIR/bench-cache"
OUT=${OUT:-/tmp/out}
W=$(mktemp -d)
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)

# ncu_case KERNEL CASE NAME [TABLE]: ncu's metrics $M for the first launch of
# kernels matching KERNEL (a regex) in the bench's case CASE (with the tuned
# table TABLE if given), into $W/ncu-NAME.txt; prints the key lines.
ncu_case() {
  local kernel=$1 case=$2 name=$3 table=()
  [ -n "${4:-}" ] && table=(--tuned-table "$4")
  timeout 120 "$NCU" --clock-control none --kernel-name "regex:$kernel" \
    --launch-count 1 --metrics "$M" "$BENCH_DIR"/bin/moelora-bench --filter "$case" \
    --out "$W/bench-$name" "${table[@]}" > "$W/ncu-$name.txt" 2>&1
  echo "$name exit $?"
  grep -E "$kernel|duration|bytes|hit_rate|throughput|warps_active|inst_executed|grid_size|registers|shared_mem|occupancy" \
    "$W/ncu-$name.txt" | sed 's/  */ /g'
}
