#!/usr/bin/env bash
# Run a command under another CPU kernel path of this machine than the one PyTorch picks by itself,
# so that numerical tests meet the summation orders of another kind of CPU:
#   a CPU with AVX-512: ATen, oneDNN and MKL held to AVX2 (the code paths of an AVX2-only CPU);
#   an AVX2-only CPU:   ATen's unvectorised kernels, oneDNN and MKL still at AVX2.
# Usage: bash tools/second_kernel_path.sh pytest -m "numerics and not compile"
# (torch.compile's generated C++ does not build when ATEN_CPU_CAPABILITY is forced: leave those out.)
set -euo pipefail
if [ "$(uname -m)" != "x86_64" ]; then
    echo "second kernel path: not an x86-64 CPU, nothing to switch; running as is" >&2
    exec "$@"
fi
if grep -qw avx512f /proc/cpuinfo; then
    export ATEN_CPU_CAPABILITY=avx2
else
    export ATEN_CPU_CAPABILITY=default
fi
export ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
echo "second kernel path: ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2" >&2
exec "$@"
