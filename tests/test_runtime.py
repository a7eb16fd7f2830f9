import numpy as np

from f2p import runtime


def test_configure_host_allocator_is_idempotent_and_harmless(monkeypatch):
    monkeypatch.setattr(runtime, "_configured", False)
    assert runtime.configure_host_allocator() is True  # glibc on these machines
    assert runtime.configure_host_allocator() is True
    big = np.ones((2048, 2048), np.float32)  # allocations still work afterwards
    assert float(big.sum()) == 2048.0 * 2048.0


def test_opt_out_by_environment(monkeypatch):
    monkeypatch.setattr(runtime, "_configured", False)
    monkeypatch.setenv("F2P_KEEP_DEFAULT_MALLOC", "1")
    assert runtime.configure_host_allocator() is False
