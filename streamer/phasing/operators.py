"""Phase-retrieval operators that compose into recipes, as in PyNX: ``HIO**180 * ER**20``.

``A * B`` applies B first, then A; ``A ** n`` repeats A n times. Every operator acts in place on
a :class:`PhasingState` whose arrays live in one array namespace ``xp`` (numpy, cupy, strict),
with a leading batch axis: P independent reconstructions advance together.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

from streamer.backend import fftn


@dataclass
class ShrinkWrap:
    """Support update: threshold a Gaussian-blurred amplitude every ``every`` iterations."""

    every: int = 20
    sigma_start: float = 2.0
    sigma_end: float = 1.0
    sigma_decay_iterations: int = 300
    threshold: float = 0.2

    def sigma(self, iteration: int) -> float:
        f = min(1.0, iteration / max(1, self.sigma_decay_iterations))
        return self.sigma_start + f * (self.sigma_end - self.sigma_start)


class PhasingState:
    """Arrays of a batch of reconstructions: object, support, measured amplitude and mask."""

    def __init__(self, xp, rho, support, amplitude, measured, shrinkwrap: ShrinkWrap | None):
        self.xp = xp
        self.rho = rho  # (P, nz, ny, nx) complex64, FFT order (origin at index 0)
        self.support = support  # (P, nz, ny, nx) bool
        self.amplitude = amplitude  # (nz, ny, nx) float32 sqrt(I), FFT order
        self.measured = measured  # (nz, ny, nx) bool, False where pixels are masked
        self.shrinkwrap = shrinkwrap
        self.iteration = 0
        self._zero = xp.zeros((), dtype=rho.dtype)
        self._gauss_cache: dict[float, object] = {}

    def fourier_projection(self):
        """Replace |F| by the measured amplitude where measured; keep it elsewhere."""
        xp = self.xp
        psi = fftn(xp, self.rho)
        scale = self.amplitude / (xp.abs(psi) + 1e-12)
        psi = xp.where(self.measured, psi * xp.astype(scale, psi.dtype), psi)
        return fftn(xp, psi, inverse=True)

    def chi_square(self):
        """Normalised misfit sum((|F| - sqrt(I))^2) / sum(I) over measured pixels, per member."""
        xp = self.xp
        mag = xp.abs(fftn(xp, self.rho))
        diff = xp.where(self.measured, mag - self.amplitude, xp.zeros((), dtype=mag.dtype))
        norm = xp.sum(xp.where(self.measured, self.amplitude, xp.zeros((), dtype=mag.dtype)) ** 2)
        return xp.sum(diff**2, axis=(1, 2, 3)) / norm

    def _gaussian(self, sigma: float):
        key = round(sigma, 3)
        if key not in self._gauss_cache:
            xp = self.xp
            nz, ny, nx = self.amplitude.shape
            fz = xp.reshape(xp.fft.fftfreq(nz), (nz, 1, 1))
            fy = xp.reshape(xp.fft.fftfreq(ny), (1, ny, 1))
            fx = xp.reshape(xp.fft.fftfreq(nx), (1, 1, nx))
            g = xp.exp(-2 * math.pi**2 * key**2 * (fz**2 + fy**2 + fx**2))
            self._gauss_cache = {key: xp.astype(g, self.rho.dtype)}
        return self._gauss_cache[key]

    def update_support(self) -> None:
        xp = self.xp
        sw = self.shrinkwrap
        amp = xp.astype(xp.abs(self.rho), self.rho.dtype)
        blurred = xp.abs(fftn(xp, fftn(xp, amp) * self._gaussian(sw.sigma(self.iteration)), inverse=True))
        peak = xp.max(blurred, axis=(1, 2, 3), keepdims=True)
        self.support = blurred > sw.threshold * peak

    def step_done(self) -> None:
        self.iteration += 1
        sw = self.shrinkwrap
        if sw is not None and sw.every > 0 and self.iteration % sw.every == 0:
            self.update_support()


class Operator:
    """Base: ``apply(state)`` advances the state; ``*`` chains, ``**`` repeats."""

    def apply(self, state: PhasingState) -> None:
        raise NotImplementedError

    def __mul__(self, other: "Operator") -> "Operator":
        return Sequence((other, self))

    def __pow__(self, n: int) -> "Operator":
        if int(n) < 1:
            raise ValueError(f"repeat count must be >= 1, got {n}")
        return Repeat(self, int(n))

    @property
    def iterations(self) -> int:
        return 1


class ER(Operator):
    """Error reduction: Fourier projection, then zero outside the support."""

    def apply(self, state):
        rho_p = state.fourier_projection()
        state.rho = state.xp.where(state.support, rho_p, state._zero)
        state.step_done()

    def __str__(self):
        return "ER"


class HIO(Operator):
    """Hybrid input-output: outside the support, rho - beta * P_M(rho)."""

    def __init__(self, beta: float = 0.9):
        self.beta = float(beta)

    def apply(self, state):
        rho_p = state.fourier_projection()
        state.rho = state.xp.where(state.support, rho_p, state.rho - self.beta * rho_p)
        state.step_done()

    def __str__(self):
        return "HIO"


class RAAR(Operator):
    """Relaxed averaged alternating reflections (Luke 2005)."""

    def __init__(self, beta: float = 0.9):
        self.beta = float(beta)

    def apply(self, state):
        rho_p = state.fourier_projection()
        outside = self.beta * state.rho - (1 - 2 * self.beta) * rho_p
        state.rho = state.xp.where(state.support, rho_p, outside)
        state.step_done()

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
