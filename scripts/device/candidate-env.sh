# Sourced by the device scripts that run a staged candidate (.carry/$1.tgz,
# scripts/candidate-prepare.sh): the card (card, g = h200|h100, T = its
# committed tuned table), then the candidate unpacked under .carry/$1 with
# its GPU-suite binary, bundle and C API cache where run-gpu-suite.sh looks.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$card" in
*H200*) g=h200 T=specs/tuned/NVIDIA_H200.json ;;
*) g=h100 T=specs/tuned/NVIDIA_H100_80GB_HBM3.json ;;
esac
echo "card: $card"
tar xzf ".carry/$1.tgz" -C .carry || exit 1
mkdir -p .carry/bin
for d in bin/moelora_gpu_tests gpu-bundle capi-cache; do
  rm -rf ".carry/$d"
  cp -r ".carry/$1/$d" ".carry/$d"
done
