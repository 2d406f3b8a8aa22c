"""Device and compute-type choice. CUDA is faked by patching CT2's two device queries;
everything else is the real code."""

import ctranslate2
import pytest

from model_utils.core.errors import InvalidParameter
from model_utils.engine import devices


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

    assert devices.resolve_device("cpu").intra_threads == devices.usable_cpus()
    assert 1 <= devices.usable_cpus() <= os.cpu_count()
    assert devices.resolve_device("cpu", threads=1).intra_threads == 1


def write_files(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "200000 100000\n"}, 2),
    ({"cpu.max": "150000 100000\n"}, 2),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu.max": "garbled\n", "cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
    ({}, None),
], ids=["v2-2-cpus", "v2-1.5-cpus-round-up", "v2-no-limit", "v1-4-cpus", "v1-no-limit", "v2-unreadable-v1-read",
        "no-cgroup"])
def test_a_containers_cpu_quota_is_read_from_its_cgroup(tmp_path, files, expected):
    """A Space's container is limited to a few of the host's cores: defaults follow the limit."""
    write_files(tmp_path, files)
    assert devices.cgroup_cpu_quota(tmp_path) == expected


GIB = 2**30


@pytest.mark.parametrize("files, expected", [
    ({"memory.max": f"{4 * GIB}\n", "memory.current": f"{GIB}\n"}, 3 * GIB),
    ({"memory.max": "max\n", "memory.current": f"{GIB}\n"}, None),
    ({"memory/memory.limit_in_bytes": f"{2 * GIB}\n", "memory/memory.usage_in_bytes": f"{GIB // 2}\n"},
     3 * GIB // 2),
    ({"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": f"{GIB}\n"}, None),
    ({"memory.max": f"{GIB}\n", "memory.current": f"{2 * GIB}\n"}, 0),  # over its limit (reclaim pending)
    ({"memory.max": f"{GIB}\n"}, None),  # a file missing: not a reading
    ({}, None),
], ids=["v2-3-gib-left", "v2-no-limit", "v1-1.5-gib-left", "v1-no-limit-huge-number", "v2-over-limit",
        "v2-usage-missing", "no-cgroup"])
def test_a_containers_memory_left_is_read_from_its_cgroup(tmp_path, files, expected):
    write_files(tmp_path, files)
    assert devices.cgroup_memory_left(tmp_path) == expected


def test_the_memory_budget_follows_the_containers_limit_not_the_hosts_free_ram(tmp_path):
    import psutil

    write_files(tmp_path, {"memory.max": f"{GIB}\n", "memory.current": f"{GIB // 4}\n"})
    assert psutil.virtual_memory().available > GIB, "the test needs a host with more than 1 GiB free"
    assert devices.available_memory("cpu", cgroup_root=tmp_path) == 3 * GIB // 4
    # a limit above the host's free RAM: the free RAM is what there is
    write_files(tmp_path, {"memory.max": f"{2**50}\n", "memory.current": "0\n"})
    assert devices.available_memory("cpu", cgroup_root=tmp_path) <= psutil.virtual_memory().total < 2**50


def test_usable_cpus_is_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(devices, "cgroup_cpu_quota", lambda: 1)
    assert devices.usable_cpus() == 1
    assert devices.resolve_device("cpu").intra_threads == 1
