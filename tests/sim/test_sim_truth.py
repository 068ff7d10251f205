"""The exported truth object reproduces the declared defects: plaquette windings, phase steps, energies.

The truth object is rho = A exp(-i G.u) (docs/conventions.md): windings and steps are those of the
displacement phase G.u = -arg(rho), the definition under which truth.h5 states them."""

import math

import numpy as np
import pytest

from sim.defects import DislocationLine, DomainBoundary, StrainRegion, StrainWall
from sim.particle import Particle, amplitude_at, phase_at
from sim.scenario import load_scenario
from sim.truth import strain_energy, truth_axes_nm, truth_object

VOXEL = 4.0
PLATE = Particle(shape="hexagon", radius_x_nm=150.0, radius_y_nm=130.0, thickness_nm=80.0)


def _windings(rho: np.ndarray, axis: int) -> np.ndarray:
    """Plaquette winding numbers of the displacement phase -arg(rho) in the planes normal to lab ``axis``
    (0 z, 1 y, 2 x).

    Loops run counter-clockwise seen from +axis (right-hand rule); plaquettes with a corner outside
    the support are 0. Result indexed like ``rho`` without the last sample of the two plane axes.
    """
    first, second = {0: (2, 1), 1: (0, 2), 2: (1, 0)}[axis]  # around z: x then y; x: y then z; y: z then x
    a = np.moveaxis(np.conj(rho), (axis, first, second), (0, 1, 2))  # phase G.u
    c = [a[:, :-1, :-1], a[:, 1:, :-1], a[:, 1:, 1:], a[:, :-1, 1:]]
    total = sum(np.angle(c[(i + 1) % 4] * np.conj(c[i])) for i in range(4))
    inside = np.all([np.abs(x) > 0.5 for x in c], axis=0)
    w = np.rint(total / (2 * math.pi)).astype(int) * inside
    return np.moveaxis(w, (0, 1, 2), (axis, first, second))


def _index(axes, point):
    return tuple(int(np.argmin(np.abs(ax - p))) for ax, p in zip(axes, point))


def test_plaquette_windings_of_the_truth_object_reproduce_the_declared_lines():
    # lines through plaquette centres (half-voxel offsets), a screw, an edge and a mixed one
    screw = DislocationLine((0.0, 22.0, 62.0), (1.0, 0.0, 0.0), (0.5, 0.0, 0.0))
    edge = DislocationLine((2.0, -58.0, 0.0), (0.0, 0.0, 1.0), (-0.5, 0.0, 0.0))
    mixed = DislocationLine((0.0, -22.0, -62.0), (1.0, 0.0, 1.0), (0.5, 0.0, 0.0))
    assert (screw.kind, edge.kind, mixed.kind) == ("screw", "edge", "mixed")
    assert (screw.winding, edge.winding, mixed.winding) == (1, -1, 1)
    particle = PLATE.with_defects([screw, edge, mixed])
    rho = truth_object(particle, VOXEL)
    axes = truth_axes_nm(particle, VOXEL)

    wz = _windings(rho, 0)  # planes normal to z: the screw and the mixed line pierce them
    for z_nm in (-26.0, -10.0, 6.0, 26.0):
        k = int(np.argmin(np.abs(axes[0] - z_nm)))
        plane = wz[k]
        found = {tuple(p): int(plane[tuple(p)]) for p in np.argwhere(plane != 0)}
        expect = {}
        for line in (screw, mixed):
            t = np.array(line.direction)
            s = (axes[0][k] - line.point_nm[0]) / t[0]
            y, x = np.array(line.point_nm[1:]) + s * t[1:]
            j, i = int(np.floor((y - axes[1][0]) / VOXEL)), int(np.floor((x - axes[2][0]) / VOXEL))
            expect[(j, i)] = line.winding * int(np.sign(t[0]))
        assert found == expect, f"z = {z_nm}"

    wx = _windings(rho, 2)  # planes normal to x: the edge line pierces them (the mixed one leaves the plate)
    for x_nm in (10.0, 50.0, 90.0):
        k = int(np.argmin(np.abs(axes[2] - x_nm)))
        plane = wx[:, :, k]
        found = {tuple(p): int(plane[tuple(p)]) for p in np.argwhere(plane != 0)}
        j = int(np.floor((edge.point_nm[0] - axes[0][0]) / VOXEL))
        i = int(np.floor((edge.point_nm[1] - axes[1][0]) / VOXEL))
        assert found == {(j, i): edge.winding}, f"x = {x_nm}"


def test_the_pristine_control_has_no_winding_anywhere():
    scen = load_scenario("pristine")
    assert len(scen.stages) >= 20
    particles = {stage.particle(scen.particle) for stage in scen.stages}
    assert len(particles) == 1  # no event at all
    (particle,) = particles
    assert not (particle.dislocations or particle.boundaries or particle.walls or particle.regions or particle.mosaic)
    rho = truth_object(particle, VOXEL)
    for axis in range(3):
        assert not _windings(rho, axis).any()
    assert strain_energy(particle)["strain_energy_j"] == 0.0


def test_the_phase_step_across_a_boundary_equals_the_declared_value():
    for step in (math.pi, 2.094, -1.0):
        wall = DomainBoundary(normal_angle_deg=30.0, offset_nm=10.0, step_rad=step)
        particle = PLATE.with_defects([], [wall])
        rho = truth_object(particle, VOXEL)
        axes = truth_axes_nm(particle, VOXEL)
        n = np.array(wall.normal)
        for along in (-40.0, 0.0, 50.0):  # points along the plane, either side of it
            t = np.array([0.0, -n[2], n[1]]) * along
            plus = _index(axes, n * (wall.offset_nm + 12.0) + t)
            minus = _index(axes, n * (wall.offset_nm - 12.0) + t)
            # the displacement phase -arg(rho) is ahead by the step on the side along the normal
            assert np.angle(np.conj(rho[plus]) * rho[minus]) == pytest.approx(np.angle(np.exp(1j * step)), abs=1e-6)


def test_strain_wall_steps_and_strain_region_strain_are_what_was_declared():
    wall = StrainWall(point_nm=(0.0, 0.0, 30.0), normal=(0.0, 0.0, 1.0), width_nm=8.0, step_rad=1.2)
    core = StrainRegion(center_nm=(0.0, 0.0, 0.0), strain=-1e-4, sigma_nm=50.0, sigma_z_nm=20.0)
    particle = PLATE.with_defects([], [], walls=[wall], regions=[core])
    pts = np.array([[0.0, 0.0], [40.0, 40.0], [-10.0, 70.0]])  # (z, y, x) of two points, either side of x = 30
    dphi = np.diff(phase_at(particle.with_defects([], [], walls=[wall]), pts))[0]
    assert dphi == pytest.approx(1.2, abs=1e-6)
    # the strain along q at the core's centre is the declared -1e-4
    h = 0.5
    only_core = particle.with_defects([], [], regions=[core])
    u = phase_at(only_core, np.array([[h, -h], [0.0, 0.0], [0.0, 0.0]])) / only_core.q_bragg_inv_nm
    assert (u[0] - u[1]) / (2 * h) == pytest.approx(-1e-4, rel=1e-3)
    energy = strain_energy(only_core)["strain_energy_j"]
    # 1/2 Y eps^2 over a Gaussian strain region: 1/2 Y eps0^2 (pi^(3/2) sigma^2 sigma_z) for a region inside the plate
    assert energy == pytest.approx(0.5 * 150e9 * 1e-8 * math.pi**1.5 * (50e-9) ** 2 * 20e-9, rel=0.15)


def test_edge_dislocations_strain_along_q_and_screws_along_q_do_not():
    screw = PLATE.with_defects([DislocationLine((0.0, 2.0, 2.0), (1.0, 0.0, 0.0), (0.5, 0.0, 0.0))])
    edge = PLATE.with_defects([DislocationLine((2.0, 2.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.0, 0.0))])
    assert strain_energy(screw)["strain_energy_j"] == 0.0
    assert strain_energy(edge)["strain_energy_j"] > 0
    assert amplitude_at(PLATE, np.zeros((3, 1)))[0] == 1.0


def test_a_glissile_loop_threading_the_plate_shows_as_an_antiparallel_pair():
    from sim.defects import DislocationLoop

    # a rectangle in the plane y = 22 (it holds b along z: glissile), closing above and below the plate
    loop = DislocationLoop(((-60.0, 22.0, -62.0), (-60.0, 22.0, 62.0), (60.0, 22.0, 62.0), (60.0, 22.0, -62.0)))
    particle = PLATE.with_defects([], [], loops=[loop])
    rho = truth_object(particle, VOXEL)
    axes = truth_axes_nm(particle, VOXEL)
    wz = _windings(rho, 0)
    j = int(np.floor((22.0 - axes[1][0]) / VOXEL))
    plus, minus = (int(np.floor((x - axes[2][0]) / VOXEL)) for x in (62.0, -62.0))
    for z_nm in (-30.0, 0.0, 30.0):
        plane = wz[int(np.argmin(np.abs(axes[0] - z_nm)))]
        found = {tuple(p): int(plane[tuple(p)]) for p in np.argwhere(plane != 0)}
        assert found == {(j, plus): 1, (j, minus): -1}  # the side along +z winds +1, the one along -z -1
    sides = loop.segments()
    assert [s.direction for s in sides[::2]] == [(0.0, 0.0, 1.0), (0.0, 0.0, -1.0)]
    assert all(s.kind == "edge" for s in sides[::2]) and all(s.kind == "screw" for s in sides[1::2])


def test_the_reference_charge_strain_energy_falls_with_the_boundary_and_rises_with_the_pair():
    """SCIENCE.md: the partial strain energy along q fell when the boundary formed and rose when it resolved into
    the pair. The reference scenario's strain regions put that into its truth (its boundary and screw lines
    strain nothing along q)."""
    scenario = load_scenario("reference")
    energy = {}
    for stage in scenario.stages:
        energy.setdefault(stage.label, strain_energy(stage.particle(scenario.particle))["strain_energy_j"])
    assert energy["pristine"] > 5e-18 and energy["domain boundary"] == 0.0
    assert energy["screw pair"] > 2e-18 and energy["pair apart"] < energy["screw pair"] / 2
    assert energy["healed"] == 0.0
