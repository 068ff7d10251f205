"""Phase-retrieval operators that compose into recipes, as in PyNX: ``HIO**180 * ER**20``.

``A * B`` applies B first, then A; ``A ** n`` repeats A n times. Every operator acts in place on
a :class:`PhasingState` whose arrays live in one array namespace ``xp`` (numpy, cupy, strict),
with a leading batch axis: P independent reconstructions advance together.
"""

from __future__ import annotations

import math

import numpy as np

from pydantic import Field

from streamer.backend import to_numpy
from streamer.phasing.fft import get_plan
from streamer.phasing.kernels import Kernels
from streamer.phasing.pixels import RATIO_LIMIT, BinnedPixels
from streamer.settings import Settings


class ShrinkWrap(Settings):
    """Support update: threshold a Gaussian-blurred amplitude every ``every`` iterations (0: never); with
    ``fill_lines``, then fill it between its first and last voxel on every line along z, y and x: a crystal has
    no empty slab inside, and a phase step of pi otherwise opens one along its plane (BENCHMARKS.md)."""

    every: int = Field(20, ge=0)
    sigma_start: float = Field(2.0, gt=0)
    sigma_end: float = Field(1.0, gt=0)
    sigma_decay_iterations: int = Field(300, ge=0)
    threshold: float = Field(0.2, gt=0, lt=1)
    fill_lines: bool = True

    def sigma(self, iteration: int) -> float:
        f = min(1.0, iteration / max(1, self.sigma_decay_iterations))
        return self.sigma_start + f * (self.sigma_end - self.sigma_start)


class PhaseConstraint(Settings):
    """For the first ``iterations``, voxels whose phase leaves [-limit, +limit] count as outside the support."""

    iterations: int = Field(0, ge=0)
    limit_rad: float = Field(1.5, gt=0)


class PhasingState:
    """A batch of reconstructions in one namespace: object, support, measured amplitude and mask.

    ``rho`` is (P, z, y, x) complex64 in FFT order (origin at index 0). With FFTW it lives in the
    plan's input buffer and every step updates it in place: the hot loop allocates nothing.
    """

    def __init__(self, xp, rho, support, amplitude, measured, shrinkwrap: ShrinkWrap | None,
                 phase_constraint: PhaseConstraint = PhaseConstraint(), plan=None,
                 binned: tuple[int, int, int] = (1, 1, 1)):
        self.xp = xp
        self.plan = plan or get_plan(xp, tuple(rho.shape))
        self.kernels = Kernels(xp, threads=getattr(self.plan, "threads", None))
        # binned data: the modulus step meets the voxels' summed pixels (pixels.py), not |F|^2 at their centres
        self.binned = BinnedPixels.make(xp, tuple(amplitude.shape), binned, getattr(self.plan, "threads", None))
        if getattr(self.plan, "kind", "") == "fftw":
            self.plan.input[...] = rho
            rho = self.plan.input
        self.rho = rho
        self.support = support  # (P, z, y, x) bool, contiguous
        self.amplitude = amplitude  # (z, y, x) float32 sqrt(I), FFT order, orthonormal scale
        self.measured = measured  # (z, y, x) bool, False where unmeasured; None: all measured
        self.shrinkwrap = shrinkwrap
        self.phase_constraint = phase_constraint
        self.iteration = 0
        self.errors: list = []  # chi-square of every member, one entry per iteration
        n = 1
        for s in amplitude.shape:
            n *= s
        self.c = 1.0 / math.sqrt(n)
        meas_amp = amplitude if measured is None else xp.where(measured, amplitude, xp.zeros_like(amplitude))
        self.norm = float(xp.sum(meas_amp * meas_amp))
        self.on_iteration = None  # called as f(state) every ``report_every`` iterations
        self.report_every = 10

    def _spectrum(self, k):
        """The unnormalised spectrum of block ``k``: one member (FFTW) or, for None, the whole batch."""
        return self.plan.forward(self.rho) if k is None else self.plan.forward_member(k)

    def chi_square(self):
        """Normalised misfit sum((|F rho| - sqrt(I))^2) / sum(I) over measured pixels, per member."""
        xp, parts = self.xp, []
        for k in self.plan.blocks:
            if self.binned is not None:
                summed = self.binned.intensity(self.kernels.squared_magnitude(self._spectrum(k), self.c))
                parts.append(self.binned.misfit(summed, self.amplitude, self.measured))
                continue
            d = xp.abs(self._spectrum(k)) * self.c - self.amplitude
            if self.measured is not None:
                d = xp.where(self.measured, d, xp.zeros_like(d))
            parts.append(xp.sum(d * d, axis=(1, 2, 3)))
        return (parts[0] if len(parts) == 1 else xp.concat(parts)) / self.norm

    def effective_support(self):
        pc = self.phase_constraint
        if self.iteration >= pc.iterations:
            return self.support
        phase = self.xp.atan2(self.xp.imag(self.rho), self.xp.real(self.rho))
        return self.support & (self.xp.abs(phase) <= pc.limit_rad)

    def project(self, a: float, b: float) -> None:
        """One iteration: rho <- P_M(rho) inside the support, a rho + b P_M(rho) outside; records each
        member's chi-square. Block by block as the plan runs them (FFTW: member by member, in place)."""
        sw = self.shrinkwrap
        due = sw is not None and sw.every > 0 and (self.iteration + 1) % sw.every == 0
        magnitude = None
        if due and self.kernels.kind == "numba":  # the fused CPU update also writes |rho| for the shrink-wrap
            magnitude = self.kernels.buffer("magnitude", tuple(self.rho.shape))
        support, sums = self.effective_support(), []
        conj = getattr(self.plan, "conjugate_inverse", False)  # the inverse as a forward FFT of the conjugate
        for k in self.plan.blocks:
            psi, misfit = self._modulus(self._spectrum(k), conj)
            sums.append(misfit)
            rho_p = self.plan.inverse_conjugate(psi) if conj else self.plan.inverse(psi)
            if k is None:
                self.rho = self.kernels.update(self.rho, rho_p, support, a, b, magnitude_out=magnitude,
                                               conjugated=conj)
            else:
                self.kernels.update(self.rho[k:k + 1], rho_p, support[k:k + 1], a, b,
                                    magnitude_out=None if magnitude is None else magnitude[k:k + 1],
                                    conjugated=conj)
        self.errors.append(sums[0] if len(sums) == 1 else self.xp.concat(sums))
        self.step_done(magnitude)

    def _modulus(self, spectrum, conj: bool):
        """The Fourier projection of a block's spectra, in place, and each one's misfit."""
        if self.binned is None:
            return self.kernels.modulus(spectrum, self.amplitude, self.measured, self.c, conjugate=conj)
        if self.kernels.kind == "numba":  # |F|^2 straight into the FFT's input
            buffer = self.binned.input_buffer(spectrum.shape[0])
            summed = self.binned.intensity(self.kernels.squared_magnitude(spectrum, self.c, out=buffer))
            return self.kernels.binned_modulus(spectrum, summed, self.amplitude, self.measured, self.c, RATIO_LIMIT,
                                               conjugate=conj)
        squared = self.kernels.squared_magnitude(spectrum, self.c)
        target = self.binned.target(squared, self.binned.intensity(squared), self.amplitude)
        return self.kernels.modulus(spectrum, target, self.measured, self.c, conjugate=conj)

    def update_support(self, magnitude=None) -> None:
        """Shrink-wrap: the support becomes where the blurred |rho| exceeds the threshold of its peak (filled along
        lines with ``fill_lines``)."""
        sw = self.shrinkwrap
        magnitude = self.xp.abs(self.rho) if magnitude is None else magnitude
        self.support = self.kernels.shrink_support(magnitude, sw.sigma(self.iteration), sw.threshold)
        if sw.fill_lines:
            self.support = self.kernels.fill_lines(self.support)

    def step_done(self, magnitude=None) -> None:
        self.iteration += 1
        if self.on_iteration is not None and self.iteration % self.report_every == 0:
            self.on_iteration(self)
        sw = self.shrinkwrap
        if sw is not None and sw.every > 0 and self.iteration % sw.every == 0:
            self.update_support(magnitude)


class Operator:
    """Base: ``apply(state)`` advances the state; ``*`` chains, ``**`` repeats."""

    def apply(self, state: PhasingState) -> None:
        raise NotImplementedError

    def __mul__(self, other: Operator) -> Operator:
        return Sequence((other, self))

    def __pow__(self, n: int) -> Operator:
        if int(n) < 1:
            raise ValueError(f"repeat count must be >= 1, got {n}")
        return Repeat(self, int(n))

    @property
    def iterations(self) -> int:
        return 1


class ER(Operator):
    """Error reduction: Fourier projection, then zero outside the support."""

    def apply(self, state):
        state.project(0.0, 0.0)

    def __str__(self):
        return "ER"


class HIO(Operator):
    """Hybrid input-output: outside the support, rho - beta * P_M(rho)."""

    def __init__(self, beta: float = 0.9):
        self.beta = float(beta)

    def apply(self, state):
        state.project(1.0, -self.beta)

    def __str__(self):
        return "HIO"


class RAAR(Operator):
    """Relaxed averaged alternating reflections (Luke 2005)."""

    def __init__(self, beta: float = 0.9):
        self.beta = float(beta)

    def apply(self, state):
        state.project(self.beta, 1 - 2 * self.beta)  # outside the support: beta x + (1 - 2 beta) P_M x

    def __str__(self):
        return "RAAR"


class Repeat(Operator):
    def __init__(self, op: Operator, n: int):
        self.op, self.n = op, n

    def apply(self, state):
        for _ in range(self.n):
            self.op.apply(state)

    @property
    def iterations(self):
        return self.n * self.op.iterations

    def __str__(self):
        inner = str(self.op)
        if isinstance(self.op, (ER, HIO, RAAR)):
            return f"{self.n}{inner}"
        return f"({inner})*{self.n}"


class Sequence(Operator):
    """Operators applied left to right."""

    def __init__(self, ops):
        flat = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, Sequence) else [op])
        self.ops = tuple(flat)

    def apply(self, state):
        for op in self.ops:
            op.apply(state)

    @property
    def iterations(self):
        return sum(op.iterations for op in self.ops)

    def __str__(self):
        return ", ".join(str(op) for op in self.ops)


def polish_object(xp, rho, support, amplitude, measured, iterations: int, threads: int | None = None,
                  binned: tuple[int, int, int] = (1, 1, 1)):
    """``iterations`` of error reduction on one object inside a fixed ``support`` (both centred: the modulus
    projection commutes with a translation; ``amplitude`` and ``measured`` in FFT order); (object, chi-square)."""
    plan = get_plan(xp, (1,) + tuple(amplitude.shape), threads=threads, effort="FFTW_ESTIMATE")
    state = PhasingState(xp, xp.asarray(np.ascontiguousarray(rho[None], np.complex64)), None, xp.asarray(amplitude),
                         None if measured is None else xp.asarray(measured), None, plan=plan, binned=binned)
    state.support = xp.asarray(np.ascontiguousarray(support[None]))
    Repeat(ER(), iterations).apply(state)
    return to_numpy(state.rho)[0].copy(), float(to_numpy(state.chi_square())[0])
