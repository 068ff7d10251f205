"""Simulated operando BCDI beamline: particle, diffraction, devices and scenarios."""
