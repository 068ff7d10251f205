"""Peer comparison: one whole reconstruction by cohere-core 4.5.4 (numpy) and by ours, same data, same recipe.

Recipe of issue 5: 20 ER, 180 HIO (beta 0.9), 20 ER, shrink-wrap every iteration (Gaussian sigma 1.0
voxel, threshold 0.1: cohere's documented defaults), one reconstruction, no genetic algorithm. The data
is a simulated Poisson scan of a plate holding a screw-dislocation pair (fixed seed). Each result is
registered to the truth (translation, twin, phase) and scored: amplitude correlation, complex
correlation, misfit to the measured amplitudes, and whether the two vortex lines are found. Both objects
are compared in our phase convention (docs/conventions.md): cohere's image is conjugated first.

cohere is never a dependency of this project: it lives in its own ignored venv with ours beside it.
From the repository root:

    python3 -m venv .venv-peers
    .venv-peers/bin/pip install -e . cohere-core==4.5.4
    .venv-peers/bin/python benchmarks/peer_cohere.py --size 48
    .venv-peers/bin/python benchmarks/peer_cohere.py --size 48 64 --cores 1   # one core for both
    .venv-peers/bin/python benchmarks/peer_cohere.py --size 48 --cores 1 --starts 8   # + quality spread
    .venv-peers/bin/python benchmarks/peer_cohere.py --size 128 --processes 3 --starts 8   # whole processes

``--processes RUNS`` times whole processes as users run them (issue 17): cohere in a Python process that
imports only numpy and cohere_core, loads the data file, iterates and saves its image; ours as the
``bcdi-stream reconstruct`` command with the recipe in a config file (its result file written, as the
command always does). Ours runs twice per start: on a first run (an empty FFT cache: no remembered plans,
as a fresh install) and with the plans the first run remembered; with ``--learned-plans``, a third time
with plans that ops/fft/learn_plans.py learned ahead (FFTW_PATIENT, once, in a folder of their own). Medians
over the starts of each run, then over the runs.

cohere runs through its documented factory ``cohere_core.controller.phasing.create_rec(params,
data_file, "np", -1)`` then ``Rec.iterate()``; its data file holds sqrt(I), centred, as cohere's
standard preprocessing writes it. Its random start is seeded from the clock (cohere's own choice),
so its result differs from run to run; ours is seeded by ``--seed``. cohere's numpy path is
single-threaded: ``--cores 1`` gives both engines one core (and is the steadier figure on a shared
machine). Times are wall clock and process CPU time, imports and the data file's writing excluded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.cli import process_settings

RECIPE_OURS = "20ER, 180HIO, 20ER"
RECIPE_COHERE = "20*ER+180*HIO+20*ER"
HIO_BETA = 0.9
SW_SIGMA = 1.0  # cohere docs: shrink_wrap_gauss_sigma defaults to 1.0
SW_THRESHOLD = 0.1  # cohere docs: shrink_wrap_threshold defaults to 0.1
SUPPORT_AREA = 0.5  # cohere docs: initial_support_area defaults to (.5, .5, .5)
PAIR_Y_NM = 54.0  # the screw pair sits at y = +-54 nm (108 nm apart), along z (q)


@dataclass
class Timing:
    wall_s: float
    cpu_s: float  # this process's CPU time, all threads: on a shared machine, what the run itself cost


@contextlib.contextmanager
def timed():
    """Yields a Timing filled in when the block ends (wall clock and process CPU time)."""
    t = Timing(0.0, 0.0)
    w0, c0 = time.perf_counter(), time.process_time()
    yield t
    t.wall_s, t.cpu_s = time.perf_counter() - w0, time.process_time() - c0


@dataclass
class Score:
    timing: Timing
    amplitude_corr: float
    complex_corr: float
    chi_square: float  # sum((s|F rho| - sqrt(I))^2) / sum(I), s fitted
    windings: list[int]

    @property
    def pair_found(self) -> bool:
        return sorted(self.windings) == [-1, 1]


def simulate(size: int, seed: int, peak_counts: float):
    """(truth, intensity): the complex crystal and a Poisson scan of it, both centred, lab order."""
    from sim.diffraction import DiffractionModel
    from sim.particle import Particle, ScrewDislocation, complex_image
    from streamer.geometry import OrthogonalGeometry

    geometry = OrthogonalGeometry(shape_zyx=(size, size, size))
    particle = Particle().with_defects([ScrewDislocation(6.0, PAIR_Y_NM, 1), ScrewDislocation(6.0, -PAIR_Y_NM, -1)])
    truth = complex_image(particle, geometry)
    expected = DiffractionModel(truth, geometry, peak_counts=peak_counts).expected_volume(1.0)
    return truth, np.random.default_rng(seed).poisson(expected).astype(np.float32)


def cohere_params() -> dict:
    """cohere's reconstruction parameters for the recipe (keys as in its config_rec)."""
    return {
        "algorithm_sequence": RECIPE_COHERE,
        "hio_beta": HIO_BETA,
        "shrink_wrap_trigger": [1, 1],  # from iteration 1 (after the first projection), every iteration
        "shrink_wrap_type": "GAUSS",
        "shrink_wrap_threshold": SW_THRESHOLD,
        "shrink_wrap_gauss_sigma": SW_SIGMA,
        "initial_support_area": [SUPPORT_AREA] * 3,
        "reconstructions": 1,
    }


def run_cohere(intensity: np.ndarray, workdir: Path) -> tuple[np.ndarray, Timing, str]:
    """cohere's whole reconstruction on numpy: (image in our convention, timing, what cohere printed).

    cohere goes to reciprocal space with the inverse FFT (``to_reciprocal_space``: |ifft(image)| = sqrt(I),
    kernel exp(+i q.r)); with the forward FFT, as ours and the simulator (docs/conventions.md), the same
    crystal is the conjugate: cohere's image is exp(+i G.u), ours exp(-i G.u). That conjugate is returned.
    """
    import cohere_core.controller.phasing as cohere_phasing

    data_file = workdir / "data.npy"
    np.save(data_file, np.sqrt(intensity))  # cohere's prepared data: amplitudes, peak centred
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), timed() as timing:
        rec = cohere_phasing.create_rec(cohere_params(), str(data_file), "np", -1, debug=True)
        if rec is None or rec.iterate() != 0:
            raise RuntimeError(f"cohere failed: {printed.getvalue()[-500:]}")
        image = np.conj(np.asarray(rec.get_image()))
    return image, timing, printed.getvalue()


def box_start(shape: tuple[int, ...], amplitude: np.ndarray, seed: int) -> np.ndarray:
    """Random complex values in a centred box of half the grid (cohere's start idea), Fourier norm of the data."""
    rng = np.random.default_rng(seed)
    start = np.zeros(shape, np.complex64)
    box = tuple(slice((n - int(SUPPORT_AREA * n)) // 2, (n - int(SUPPORT_AREA * n)) // 2 + int(SUPPORT_AREA * n))
                for n in shape)
    inner = start[box].shape
    start[box] = rng.random(inner) + 1j * rng.random(inner)
    return (start * np.sqrt(np.sum(amplitude**2) / np.sum(np.abs(start) ** 2))).astype(np.complex64)


def ours_config(*, box: bool):
    """Our engine set to the same recipe. A box start goes through the ``start`` path, so its recipe too."""
    from streamer.phasing import PhasingConfig, ShrinkWrap

    sw = ShrinkWrap(every=1, sigma_start=SW_SIGMA, sigma_end=SW_SIGMA, threshold=SW_THRESHOLD, fill_lines=False)
    return PhasingConfig(recipe=RECIPE_OURS, warm_recipe=RECIPE_OURS, warm_start=box, hio_beta=HIO_BETA,
                         population=1, average=1, shrinkwrap=sw, coarse_crop=1.0)  # no coarse search (ours_toml)


def run_ours(intensity: np.ndarray, *, seed: int, box: bool) -> tuple[np.ndarray, Timing]:
    """Our whole reconstruction (numpy backend): (image, timing)."""
    from streamer.backend import get_namespace
    from streamer.phasing import reconstruct

    config = ours_config(box=box)
    with timed() as timing:
        start = box_start(intensity.shape, np.sqrt(intensity), seed) if box else None
        result = reconstruct(intensity, xp=get_namespace("numpy"), config=config, rng=seed, start=start)
    if result.warm_started != box or result.iterations != 220:
        raise RuntimeError(f"engine ran {result.recipe!r} ({result.iterations} iterations), not the recipe asked")
    return result.rho, timing


def score(rho: np.ndarray, timing: Timing, truth: np.ndarray, intensity: np.ndarray) -> Score:
    """Register ``rho`` to the truth and measure it against the truth and the data."""
    from streamer.analysis.defects import find_vortex_lines
    from streamer.analysis.displacement import displacement_object, particle_support
    from streamer.backend import get_namespace
    from streamer.phasing.alignment import amplitude_correlation, register

    rho = np.asarray(rho, np.complex64)
    reg = register(rho, truth.astype(np.complex64))
    lines = find_vortex_lines(displacement_object(reg.aligned), xp=get_namespace("numpy"),
                              mask=particle_support(np.abs(reg.aligned)))
    model = np.fft.fftshift(np.abs(np.fft.fftn(rho)))
    measured = np.sqrt(intensity)
    s = np.sum(model * measured) / np.sum(model**2)
    chi = float(np.sum((s * model - measured) ** 2) / np.sum(intensity))
    return Score(timing, amplitude_correlation(reg.aligned, truth), reg.correlation, chi,
                 [line.winding for line in lines])


def truth_windings(truth: np.ndarray) -> list[int]:
    """Windings of the displacement phase -arg(truth) (docs/conventions.md), as the analysis reads them."""
    from streamer.analysis.defects import find_vortex_lines
    from streamer.analysis.displacement import displacement_object, particle_support
    from streamer.backend import get_namespace

    return [line.winding for line in find_vortex_lines(displacement_object(truth), xp=get_namespace("numpy"),
                                                       mask=particle_support(np.abs(truth)))]


def _row(name: str, sc: Score, cohere: Timing) -> str:
    t = sc.timing
    return (f"{name:<34} {t.wall_s:>7.2f} {cohere.wall_s / t.wall_s:>6.1f} {t.cpu_s:>7.2f} "
            f"{cohere.cpu_s / t.cpu_s:>6.1f} {sc.amplitude_corr:>9.3f} {sc.complex_corr:>9.3f} "
            f"{sc.chi_square:>8.4f} {sorted(sc.windings)!s:>12} {'yes' if sc.pair_found else 'no':>5}")


def compare(size: int, *, seed: int, data_seed: int, peak_counts: float) -> None:
    import numba

    from streamer.phasing.fft import cpu_count

    truth, intensity = simulate(size, data_seed, peak_counts)
    print(f"\n{size}^3, {intensity.sum():.3g} photons, peak {intensity.max():.0f} counts; truth's vortex windings "
          f"{sorted(truth_windings(truth))}; ours: {cpu_count()} FFTW thread(s), {numba.get_num_threads()} numba "
          f"thread(s); cohere: 1 thread")
    with tempfile.TemporaryDirectory(prefix="peer-cohere-") as tmp:
        rho_c, t_c, printed = run_cohere(intensity, Path(tmp))
    own = [line for line in printed.splitlines() if line.startswith("iterate took")]
    cohere = score(rho_c, t_c, truth, intensity)
    first = score(*run_ours(intensity, seed=seed, box=True), truth, intensity)
    second = score(*run_ours(intensity, seed=seed, box=True), truth, intensity)
    auto = score(*run_ours(intensity, seed=seed, box=False), truth, intensity)
    print(f"{'reconstruction':<34} {'wall s':>7} {'x':>6} {'cpu s':>7} {'x':>6} {'amp corr':>9} {'cplx corr':>9} {'chi2':>8} "
          f"{'vortices':>12} {'pair':>5}")
    print(_row("cohere-core 4.5.4 (np)", cohere, t_c))
    print(_row("ours, box start, 1st (plans+JIT)", first, t_c))
    print(_row("ours, box start, 2nd (plans made)", second, t_c))
    print(_row("ours, autocorrelation support", auto, t_c))
    print(f"(x: cohere's seconds / these seconds; cohere's own timer: {own[0].strip() if own else 'n/a'})")


def spread(size: int, starts: int, *, seed: int, data_seed: int, peak_counts: float) -> None:
    """Quality over ``starts`` random starts each: one reconstruction says little about a method."""
    truth, intensity = simulate(size, data_seed, peak_counts)
    runs: dict[str, list[Score]] = {"cohere-core 4.5.4 (np)": [], "ours, box start": [],
                                    "ours, autocorrelation support": []}
    with tempfile.TemporaryDirectory(prefix="peer-cohere-") as tmp:
        for k in range(starts):
            rho, timing, _ = run_cohere(intensity, Path(tmp))
            runs["cohere-core 4.5.4 (np)"].append(score(rho, timing, truth, intensity))
            for name, box in (("ours, box start", True), ("ours, autocorrelation support", False)):
                runs[name].append(score(*run_ours(intensity, seed=seed + 1 + k, box=box), truth, intensity))
    print(f"\n{size}^3 over {starts} random starts each (ours: seeds {seed + 1}..{seed + starts}; cohere: its clock)")
    print(f"{'reconstruction':<34} {'median wall s':>13} {'x':>6} {'median cpu s':>12} {'amp corr median [min, max]':>27} "
          f"{'median chi2':>11} {'pair found':>10}")
    cohere_wall = np.median([sc.timing.wall_s for sc in runs["cohere-core 4.5.4 (np)"]])
    for name, scores in runs.items():
        amp = np.array([sc.amplitude_corr for sc in scores])
        wall = np.median([sc.timing.wall_s for sc in scores])
        print(f"{name:<34} {wall:>13.2f} {cohere_wall / wall:>6.1f} {np.median([sc.timing.cpu_s for sc in scores]):>12.2f} "
              f"{f'{np.median(amp):.3f} [{amp.min():.3f}, {amp.max():.3f}]':>27} "
              f"{np.median([sc.chi_square for sc in scores]):>11.4f} "
              f"{f'{sum(sc.pair_found for sc in scores)}/{starts}':>10}")


COHERE_PROCESS = """
import sys, numpy as np, cohere_core.controller.phasing as ph
params = {params!r}
rec = ph.create_rec(params, sys.argv[1], "np", -1, debug=True)
if rec is None or rec.iterate() != 0:
    raise SystemExit("cohere failed")
np.save(sys.argv[2], np.asarray(rec.get_image()))
"""


def ours_toml() -> str:
    """Our [phasing] table for the recipe (the reconstruct command's --config). The coarse search for the start
    (`coarse_crop` < 1: three candidate runs on the central half of q before the recipe, our default since session
    18) is off, and so is the shrink-wrap's filling along lines (`fill_lines`, since session 16): cohere runs the recipe
    alone from its random start and thresholds its blurred amplitude only, and so does ours here."""
    return (f'[phasing]\nrecipe = "{RECIPE_OURS}"\nhio_beta = {HIO_BETA}\npopulation = 1\naverage = 1\ncoarse_crop = 1.0\n'
            f'[phasing.shrinkwrap]\nevery = 1\nsigma_start = {SW_SIGMA}\nsigma_end = {SW_SIGMA}\n'
            f'threshold = {SW_THRESHOLD}\nfill_lines = false\n')


def _timed_process(cmd: list[str], env: dict | None = None) -> float:
    """Wall seconds of one whole process (start-up, imports, reading, phasing, writing)."""
    import subprocess

    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return seconds


def processes(size: int, runs: int, starts: int, *, seed: int, data_seed: int, peak_counts: float,
              learned: bool = False) -> None:
    """Whole processes, ``runs`` x ``starts``: cohere; ours on a first run and with plans remembered (and,
    with ``learned``, with the plans ops/fft/learn_plans.py learned ahead, FFTW_PATIENT, in a folder of their own)."""
    import subprocess
    import sys

    from streamer.recording.result_file import read_result

    truth, intensity = simulate(size, data_seed, peak_counts)
    bcdi = str(Path(sys.executable).with_name("bcdi-stream"))
    names = ("cohere-core 4.5.4 (np)", "ours, first run (no remembered plans)", "ours, plans remembered")
    if learned:
        names += ("ours, plans learned ahead (patient)",)
    medians: dict[str, list[float]] = {n: [] for n in names}
    quality: dict[str, list[Score]] = {n: [] for n in names}
    print(f"\n{size}^3 whole processes: {runs} runs x {starts} starts; load average {os.getloadavg()[0]:.1f}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="peer-process-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "amplitudes.npy", np.sqrt(intensity))  # cohere's prepared data
        np.save(tmp / "intensity.npy", intensity)  # ours: the intensity
        (tmp / "cohere_run.py").write_text(COHERE_PROCESS.format(params=cohere_params()))
        (tmp / "ours.toml").write_text(ours_toml())
        if learned:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "ops" / "fft" / "learn_plans.py"),
                            "--shape", "1", str(size), str(size), str(size)],
                           env={**os.environ, "BCDI_STREAM_CACHE": str(tmp / "learned")}, check=True,
                           capture_output=True)
            print(f"  plans learned ahead (patient) in {time.perf_counter() - t0:.0f} s", flush=True)
        for r in range(runs):
            walls: dict[str, list[float]] = {n: [] for n in names}
            for k in range(starts):
                start = seed + 1 + r * starts + k
                w = _timed_process([sys.executable, str(tmp / "cohere_run.py"), str(tmp / "amplitudes.npy"),
                                    str(tmp / "cohere.npy")])
                walls[names[0]].append(w)
                quality[names[0]].append(score(np.conj(np.load(tmp / "cohere.npy")), Timing(w, w), truth, intensity))
                cache = tmp / f"cache-{r}-{k}"  # empty: this start's first run plans from nothing
                for name in names[1:]:
                    folder = tmp / "learned" if "learned" in name else cache
                    cmd = [bcdi, "reconstruct", str(tmp / "intensity.npy"), "--out", str(tmp / "ours.h5"),
                           "--config", str(tmp / "ours.toml"), "--recipe", RECIPE_OURS, "--population", "1",
                           "--average", "1", "--seed", str(start), "--voxel-nm", "12"]
                    w = _timed_process(cmd, {**os.environ, "BCDI_STREAM_CACHE": str(folder)})
                    walls[name].append(w)
                    quality[name].append(score(read_result(tmp / "ours.h5")["object"], Timing(w, w), truth,
                                               intensity))
                print(f"  run {r + 1} start {k + 1}: " + ", ".join(f"{walls[n][-1]:.2f}" for n in names) + " s",
                      flush=True)
            for n in names:
                medians[n].append(float(np.median(walls[n])))
    cohere = float(np.median(medians[names[0]]))
    print(f"{'process':<40} {'run medians (s)':>24} {'median s':>9} {'x':>6} {'amp corr median [min, max]':>27} "
          f"{'pair found':>10}")
    for n in names:
        amp = np.array([sc.amplitude_corr for sc in quality[n]])
        wall = float(np.median(medians[n]))
        print(f"{n:<40} {', '.join(f'{m:.2f}' for m in medians[n]):>24} {wall:>9.2f} {cohere / wall:>6.1f} "
              f"{f'{np.median(amp):.3f} [{amp.min():.3f}, {amp.max():.3f}]':>27} "
              f"{f'{sum(sc.pair_found for sc in quality[n])}/{len(amp)}':>10}")


def main() -> None:
    process_settings()  # OpenMP threads spin briefly between kernels, as under bcdi-stream
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs="+", default=[48], help="grid edge (voxels of 12 nm), e.g. 48 64 128")
    ap.add_argument("--seed", type=int, default=0, help="our random start")
    ap.add_argument("--data-seed", type=int, default=1, help="Poisson noise of the simulated scan")
    ap.add_argument("--peak-counts", type=float, default=2e4, help="counts in the brightest voxel")
    ap.add_argument("--starts", type=int, default=0, help="also score this many random starts of each (quality)")
    ap.add_argument("--processes", type=int, default=0, metavar="RUNS",
                    help="time whole processes instead: RUNS runs of --starts starts each (issue 17)")
    ap.add_argument("--cores", type=int, default=0, help="pin the process to this many cores (0: leave as is)")
    ap.add_argument("--learned-plans", action="store_true",
                    help="load the FFTW plans learned ahead with ops/fft/learn_plans.py (as the service does); "
                         "with --processes: learn them (FFTW_PATIENT) and time a third process on them")
    args = ap.parse_args()
    if any(n < 16 or n % 2 for n in args.size):
        ap.error(f"--size needs even grid edges >= 16, got {args.size}")
    if args.cores:
        # before numba and FFTW start their thread pools (they size them from the affinity)
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    try:
        import cohere_core  # noqa: F401
    except ImportError:
        ap.error("cohere_core is not installed here: run it with .venv-peers/bin/python (set-up: this script's --help)")
    if args.learned_plans and not args.processes:
        from streamer.phasing.wisdom import load_wisdom, wisdom_path

        print(f"FFTW plans learned ahead: {'loaded' if load_wisdom() else 'none found'} ({wisdom_path()})")
    print(f"recipe {RECIPE_OURS!r} / cohere {RECIPE_COHERE!r}; shrink-wrap every iteration, sigma {SW_SIGMA}, "
          f"threshold {SW_THRESHOLD}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for size in args.size:
        if args.processes:
            processes(size, args.processes, args.starts or 8, seed=args.seed, data_seed=args.data_seed,
                      peak_counts=args.peak_counts, learned=args.learned_plans)
            continue
        compare(size, seed=args.seed, data_seed=args.data_seed, peak_counts=args.peak_counts)
        if args.starts:
            spread(size, args.starts, seed=args.seed, data_seed=args.data_seed, peak_counts=args.peak_counts)


if __name__ == "__main__":
    main()
