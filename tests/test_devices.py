"""Device and compute-type choice. CUDA is faked by patching CT2's two device queries;
everything else is the real code."""

import ctranslate2
import pytest

from model_utils.engine import devices
from model_utils.core.errors import InvalidParameter


def fake_ct2(monkeypatch, cuda_count, cuda_types):
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: cuda_count)
    real = ctranslate2.get_supported_compute_types

    def supported(device, device_index=0):
        if device == "cuda":
            if cuda_types is None:
                raise RuntimeError("CUDA driver version is insufficient")
            return set(cuda_types)
        return real(device)

    monkeypatch.setattr(ctranslate2, "get_supported_compute_types", supported)


def test_auto_picks_cuda_with_int8_float16(monkeypatch):
    fake_ct2(monkeypatch, 1, {"float32", "int8", "int8_float16", "float16", "int8_float32"})
    cfg = devices.resolve_device("auto")
    assert (cfg.device, cfg.compute_type) == ("cuda", "int8_float16")


def test_cuda_falls_back_when_int8_float16_missing(monkeypatch):
    fake_ct2(monkeypatch, 1, {"float32", "float16"})
    assert devices.resolve_device("auto").compute_type == "float16"


def test_auto_picks_cpu_int8_without_cuda(monkeypatch):
    fake_ct2(monkeypatch, 0, None)  # get_supported_compute_types('cuda') raises here
    cfg = devices.resolve_device("auto")
    assert (cfg.device, cfg.compute_type) == ("cpu", "int8")
    assert devices.supported_compute_types("cuda") == set()


def test_explicit_cuda_without_gpu_is_a_clear_error(monkeypatch):
    fake_ct2(monkeypatch, 0, None)
    with pytest.raises(InvalidParameter, match="no CUDA device"):
        devices.resolve_device("cuda")


def test_unsupported_compute_type(monkeypatch):
    fake_ct2(monkeypatch, 0, None)
    with pytest.raises(InvalidParameter, match="not supported on cpu"):
        devices.resolve_device("cpu", "float16" if "float16" not in ctranslate2.get_supported_compute_types("cpu")
                               else "int8_bfloat16")


def test_threads_default_to_cores(monkeypatch):
    fake_ct2(monkeypatch, 0, None)
    import os

    assert devices.resolve_device("cpu").intra_threads == os.cpu_count()
    assert devices.resolve_device("cpu", threads=1).intra_threads == 1


def test_available_memory_is_positive():
    assert devices.available_memory("cpu") > 0
