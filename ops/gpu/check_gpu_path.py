"""Check the phasing engine on a GPU against the CPU, step by step, then as a whole reconstruction.

Meant for the first minutes on a CUDA machine, before timing anything: each fused step (modulus
projection, support update, shrink-wrap blur and support) on random data, then a guided
reconstruction of a small simulated object, on ``--backend`` and on numpy with the same seed. The
float32 FFTs round differently on each backend, so the steps must agree to float32 precision and
the reconstructions to the tolerances the test suite asks of array-api-strict. Prints every
comparison; exit status 0 when all hold. ``--backend strict`` runs the same checks on the CPU (the
test suite does, so this script keeps working where no GPU is):

    .venv/bin/python ops/gpu/check_gpu_path.py --backend cupy
    .venv/bin/python benchmarks/phasing_speed.py --backend cupy --size 128 256 --population 1 8 32
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from streamer.backend import get_namespace, to_numpy
from streamer.phasing import PhasingConfig, reconstruct
from streamer.phasing.alignment import amplitude_correlation
from streamer.phasing.kernels import Kernels


def _report(name: str, ok: bool, detail: str) -> bool:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return ok


def _close(name: str, got, want, rtol: float, atol: float = 0.0) -> bool:
    """|got - want| <= atol + rtol |want| everywhere; prints the worst error as a fraction of what is allowed."""
    got, want = to_numpy(got), np.asarray(want)
    if got.shape != want.shape:
        return _report(name, False, f"shape {got.shape}, expected {want.shape}")
    worst = float(np.max(np.abs(got - want) / (atol + rtol * np.abs(want))))
    return _report(name, worst <= 1.0, f"worst error {worst:.3f} of the allowed (rtol {rtol:g}, atol {atol:g})")


def check_steps(xp, shape: tuple[int, ...], seed: int) -> bool:
    """Every fused step on ``xp`` against the numpy path, on the same random data."""
    rng = np.random.default_rng(seed)
    psi = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    psi[0, 0, 0, 0] = 0  # an exact zero stays zero
    amp = rng.random(shape[1:]).astype(np.float32)
    measured = rng.random(shape[1:]) > 0.1
    rho = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    rho_p = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    support = rng.random(shape) > 0.5
    magnitude = rng.random(shape).astype(np.float32) * 0.05
    magnitude[:, 2:5, 3:7, 1:6] += 1.0
    dev, cpu = Kernels(xp), Kernels(get_namespace("numpy"))
    ok = True
    for mask in (None, measured):
        got, sums = dev.modulus(xp.asarray(psi), xp.asarray(amp), None if mask is None else xp.asarray(mask), 0.3)
        want, want_sums = cpu.modulus(psi.copy(), amp, mask, 0.3)
        label = "every pixel measured" if mask is None else "masked pixels"
        ok &= _close(f"modulus projection, {label}", got, want, 1e-5, 1e-6)
        ok &= _close(f"modulus misfit per member, {label}", sums, want_sums, 1e-4)
    for a, b, name in ((0.0, 0.0, "ER"), (1.0, -0.9, "HIO"), (0.75, -0.5, "RAAR")):
        got = dev.update(xp.asarray(rho), xp.asarray(rho_p), xp.asarray(support), a, b)
        ok &= _close(f"support update ({name})", got, cpu.update(rho.copy(), rho_p, support, a, b), 1e-6, 1e-6)
    for sigma in (1.0, 2.0):
        ok &= _close(f"shrink-wrap blur (sigma {sigma})", dev.blur(xp.asarray(magnitude), sigma),
                     cpu.blur(magnitude, sigma), 1e-5, 1e-6)
        got = to_numpy(dev.shrink_support(xp.asarray(magnitude), sigma, 0.2))
        want = cpu.shrink_support(magnitude, sigma, 0.2)
        blurred = cpu.blur(magnitude, sigma)
        limit = 0.2 * blurred.max(axis=(1, 2, 3), keepdims=True)
        at_threshold = np.abs(blurred - limit) <= 1e-5 * limit  # where rounding may tip a voxel either way
        differ = (got != want) & ~at_threshold
        ok &= _report(f"shrink-wrap support (sigma {sigma})", got.shape == want.shape and not differ.any(),
                      f"{int(differ.sum())} of {want.size} voxels differ away from the threshold")
    return ok


def check_reconstruction(xp, size: int, seed: int) -> bool:
    """A guided reconstruction of a plate holding a phase vortex, on ``xp`` and on numpy, same seed."""
    z, y, x = np.ogrid[-size // 2:size // 2, -size // 2:size // 2, -size // 2:size // 2]
    plate = (np.abs(z) < size // 6) & (y**2 + x**2 < (size // 4) ** 2)
    obj = (plate * np.exp(1j * np.arctan2(y, x + 0.5))).astype(np.complex64)
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))) ** 2
    # HIO amplifies rounding differences, and the coarse search's choice among close candidates with them: HIO is
    # checked from the plain start, the search with ER (no chaos to amplify)
    cfg = PhasingConfig(recipe="(20HIO, 5ER)*2", population=4, average=2, coarse_thresholds=[])
    got = reconstruct(intensity, xp=xp, config=cfg, rng=seed)
    want = reconstruct(intensity, xp=get_namespace("numpy"), config=cfg, rng=seed)
    ok = _close("reconstruction: chi-square of every member", got.chi_square, want.chi_square, 0.1)
    corr = amplitude_correlation(got.rho, want.rho)
    ok &= _report("reconstruction: amplitude correlation with numpy's", corr > 0.99, f"{corr:.4f} (needs > 0.99)")
    cfg = PhasingConfig(recipe="20ER", population=3, average=2)
    got = reconstruct(intensity, xp=xp, config=cfg, rng=seed)
    want = reconstruct(intensity, xp=get_namespace("numpy"), config=cfg, rng=seed)
    ok &= _close("reconstruction from the coarse search: chi-square of every member", got.chi_square,
                 want.chi_square, 0.1)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="cupy", choices=["cupy", "strict", "numpy"])
    ap.add_argument("--size", type=int, default=32, help="grid edge of the reconstruction check")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    xp = get_namespace(args.backend)  # a clear error when cupy or its GPU is missing
    print(f"backend {args.backend}: element-wise steps by {Kernels(xp).kind}")
    ok = check_steps(xp, (2, 12, 14, 16), args.seed)
    ok &= check_reconstruction(xp, args.size, args.seed)
    print("all checks hold" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
