"""The recording process's socket messages: every array comes back equal, large ones sent beside the message."""

import socket
import threading
from multiprocessing.connection import Connection

import numpy as np

from streamer.recording.process import OUT_OF_BAND_BYTES, _receive, _send


def test_arrays_small_and_large_cross_the_socket_unchanged():
    rng = np.random.default_rng(0)
    big = (rng.random((40, 40, 40)) + 1j * rng.random((40, 40, 40))).astype(np.complex64)
    assert big.nbytes >= OUT_OF_BAND_BYTES
    value = {"big": big, "strided": big[::2, :, ::3], "mask": big.real > 0.5, "small": np.arange(5, dtype=np.int16),
             "empty": np.zeros((0, 3)), "scalar": np.float32(2.5), "nested": [big.imag.astype(np.float64), "text"]}
    a, b = socket.socketpair()
    ours, theirs = Connection(a.detach()), Connection(b.detach())
    sender = threading.Thread(target=_send, args=(ours, value))  # the socket holds less than the message
    sender.start()
    try:
        got = _receive(theirs)
    finally:
        sender.join(30)
        ours.close()
        theirs.close()
    for key in ("big", "strided", "mask", "small", "empty"):
        assert got[key].dtype == value[key].dtype and np.array_equal(got[key], value[key]), key
    assert got["scalar"] == 2.5 and got["nested"][1] == "text"
    assert np.array_equal(got["nested"][0], value["nested"][0])
