"""Compile the phasing engine's CUDA kernels with NVRTC, on a machine that has no GPU.

The cupy path's fused kernels (``streamer.phasing.kernels.CUDA_KERNELS``) are compiled by cupy only
when they first run, on a GPU; this compiles the same bodies ahead, inside a wrapper shaped like the
one cupy's ElementwiseKernel generates (cupy's ``complex<float>``, inputs as ``const`` values,
outputs as references), for the architectures given. It also compiles a deliberately broken body
and expects that to fail, so a silent compiler is never taken for a pass. Exit status 0: every
kernel compiled. Needs cupy and NVRTC, in a venv of their own (no driver, no device):

    python3 -m venv .venv-gpucheck
    .venv-gpucheck/bin/pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12
    .venv-gpucheck/bin/python ops/gpu/check_cuda_kernels.py --arch compute_80 compute_90
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, not installed in this venv

from streamer.phasing.kernels import CUDA_KERNELS

C_TYPES = {"float32": "float", "float64": "double", "bool": "bool", "complex64": "complex<float>",
           "int32": "int", "uint8": "unsigned char"}


def _params(text: str) -> list[tuple[str, str]]:
    """``"float32 amp, bool measured"`` -> [("float", "amp"), ("bool", "measured")]."""
    out = []
    for item in text.split(","):
        dtype, name = item.split()
        if dtype not in C_TYPES:
            raise ValueError(f"no C type for {dtype!r} (parameter {name!r})")
        out.append((C_TYPES[dtype], name))
    return out


def kernel_source(inputs: str, outputs: str, body: str, name: str) -> str:
    """One CUDA kernel applying ``body`` element by element, as cupy's ElementwiseKernel would."""
    ins, outs = _params(inputs), _params(outputs)
    args = [f"const {t}* _raw_{n}" for t, n in ins] + [f"{t}* _raw_{n}" for t, n in outs] + ["long long _n"]
    loads = [f"const {t} {n} = _raw_{n}[i];" for t, n in ins] + [f"{t} &{n} = _raw_{n}[i];" for t, n in outs]
    return (f'extern "C" __global__ void {name}({", ".join(args)}) {{\n'
            f"  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < _n;"
            f" i += (long long)blockDim.x * gridDim.x) {{\n    " + "\n    ".join(loads) + f"\n{body}\n  }}\n}}\n")


def compile_source(source: str, arch: str) -> tuple[bool, str]:
    """(compiled, NVRTC's log) for ``source`` with cupy's headers."""
    import cupy
    from cupy_backends.cuda.libs import nvrtc

    include = Path(cupy.__file__).parent / "_core" / "include"
    cccl = include / "cupy" / "_cccl"
    options = [f"-I{include}", f"-I{cccl / 'thrust'}", f"-I{cccl / 'libcudacxx'}", f"-I{cccl / 'cub'}",
               "--std=c++17", f"-arch={arch}"]
    program = nvrtc.createProgram("#include <cupy/complex.cuh>\n" + source, "bcdi_kernels.cu", [], [])
    try:
        nvrtc.compileProgram(program, options)
    except nvrtc.NVRTCError:
        return False, nvrtc.getProgramLog(program)
    return True, nvrtc.getProgramLog(program)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["compute_80", "compute_90"],
                    help="virtual architectures to compile for (A100: compute_80, H100: compute_90)")
    args = ap.parse_args(argv)
    try:
        import cupy  # noqa: F401
        from cupy_backends.cuda.libs import nvrtc  # noqa: F401
    except ImportError as exc:
        ap.error(f"cupy with NVRTC is needed ({exc}); set-up: see --help")
    failed = 0
    broken = kernel_source("float32 x", "float32 y", "y = undefined_function(x);", "bcdi_broken")
    for arch in args.arch:
        if compile_source(broken, arch)[0]:
            print(f"{arch}: a broken kernel compiled: this check cannot be trusted")
            return 2
        for key, spec in CUDA_KERNELS.items():
            ok, log = compile_source(kernel_source(*spec), arch)
            print(f"{arch}: {key} ({spec[3]}) {'compiled' if ok else 'FAILED'}")
            if not ok:
                failed += 1
                print(log)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
