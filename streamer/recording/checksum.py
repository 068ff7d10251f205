"""Jenkins lookup3 (hashlittle), the checksum HDF5 uses for its metadata: to repair a file after a kill."""

from __future__ import annotations

import struct

_M32 = 0xFFFFFFFF  # arithmetic modulo 2^32


def lookup3(data: bytes) -> int:
    """Bob Jenkins' lookup3 hash (hashlittle, seed 0): HDF5's metadata checksum."""
    words = struct.unpack(f"<{(len(data) + 11) // 12 * 3}I", data + bytes(-len(data) % 12))
    a = b = c = (0xDEADBEEF + len(data)) & _M32
    for i in range(0, len(words), 3):
        a, b, c = (a + words[i]) & _M32, (b + words[i + 1]) & _M32, (c + words[i + 2]) & _M32
        if i + 3 == len(words):
            return _lookup3_final(a, b, c)
        a, b, c = _lookup3_mix(a, b, c)
    return c


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def _lookup3_mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    for shift_a, shift_b, shift_c in ((4, 6, 8), (16, 19, 4)):
        a = ((a - c) & _M32) ^ _rot(c, shift_a)
        c = (c + b) & _M32
        b = ((b - a) & _M32) ^ _rot(a, shift_b)
        a = (a + c) & _M32
        c = ((c - b) & _M32) ^ _rot(b, shift_c)
        b = (b + a) & _M32
    return a, b, c


def _lookup3_final(a: int, b: int, c: int) -> int:
    c = ((c ^ b) - _rot(b, 14)) & _M32
    a = ((a ^ c) - _rot(c, 11)) & _M32
    b = ((b ^ a) - _rot(a, 25)) & _M32
    c = ((c ^ b) - _rot(b, 16)) & _M32
    a = ((a ^ c) - _rot(c, 4)) & _M32
    b = ((b ^ a) - _rot(a, 14)) & _M32
    c = ((c ^ b) - _rot(b, 24)) & _M32
    return c
