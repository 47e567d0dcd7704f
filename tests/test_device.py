"""minivgg/device.py, the one translation of a device name, and what machine.py measures: the
float32 matmul rate and the free RAM or GPU memory."""
import numpy as np
import pytest

import miniautograd as ag
from miniautograd.backend import CHUNK_ELEMENTS
from minivgg import machine as M
from minivgg.device import Device, choose
from minivgg.errors import UserError


def test_a_device_gives_what_the_code_needs_of_it():
    cpu, gpu = Device("cpu"), Device("gpu")
    assert (cpu.chunk, gpu.chunk) == (CHUNK_ELEMENTS["cpu"], CHUNK_ELEMENTS["gpu"])
    assert (cpu.memory, gpu.memory) == ("RAM", "GPU memory")
    a = np.ones(3)
    assert cpu.array_module() is np and cpu.put(a) is a
    free = cpu.free_bytes()
    assert free is None or free > 0
    with pytest.raises(ValueError, match="device must be one of cpu, gpu, not 'tpu'"):
        Device("tpu")


def test_choose_auto_says_which_and_cpu_says_nothing():
    device, notice = choose("cpu")
    assert device == Device("cpu") and notice is None
    device, notice = choose("auto")
    assert device.name in ("cpu", "gpu") and notice.startswith("device: ")


@pytest.mark.skipif(ag.gpu_available(), reason="this machine has a GPU")
def test_gpu_without_cupy_is_one_sentence():
    with pytest.raises(UserError, match="--device gpu: .*pip install"):
        choose("gpu")
    with pytest.raises(RuntimeError, match="pip install"):
        Device("gpu").array_module()


def test_measure_matmul_gflops_numpy():
    rate = M.measure_matmul_gflops(np, n=64, repeats=3)
    assert np.isfinite(rate) and rate > 0


def test_meminfo_and_cgroup_parsing(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  2000 kB\nMemFree:  100 kB\nMemAvailable:   1500 kB\n")
    assert M.meminfo_available(meminfo) == 1500 * 1024
    meminfo.write_text("MemTotal:  2000 kB\n")
    assert M.meminfo_available(meminfo) is None
    assert M.meminfo_available(tmp_path / "absent") is None
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("4096\n")
    assert M.cgroup_free(tmp_path) is None
    (tmp_path / "memory.max").write_text("10000\n")
    assert M.cgroup_free(tmp_path) == 10000 - 4096


@pytest.mark.gpu
def test_gpu_rate_and_memory():
    if not ag.gpu_available():
        pytest.skip("CuPy with a CUDA device is not available")
    gpu = Device("gpu")
    assert gpu.free_bytes() > 0 and gpu.array_module() is ag.require_gpu()
    assert M.measure_matmul_gflops(gpu.array_module(), n=512, repeats=3) > 0
