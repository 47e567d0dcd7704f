"""minivgg/device.py, the one translation of a device name, and what machine.py measures: the
float32 matmul rate and the free RAM or GPU memory."""
import os
import platform
import subprocess
import sys

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


REALLOCATION = """
import resource, sys
import numpy as np
import minivgg.stylize
from minivgg import machine
kept = machine.keep_freed_memory() if sys.argv[1] == "keep" else None
a = np.ones(2 ** 24, dtype=np.float32)             # 64 MiB: pages of its own by default
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(2 ** 24, dtype=np.float32)             # the same size again, every page written
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def reallocation_faults(mode):
    """(what keep_freed_memory returned, or None; page faults writing a 64 MiB array again)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", REALLOCATION, mode], capture_output=True,
                         text=True, check=True, env=env).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_reuses_the_pages_of_a_freed_array():
    """64 MiB written afresh need at least 32 page faults (2 MiB pages; 16,384 of 4 KiB): as
    glibc does by default, even after importing minivgg; with keep_freed_memory the freed
    array's pages are reused, and writing its successor faults (almost) none."""
    assert reallocation_faults("import")[1] >= 32
    kept, faults = reallocation_faults("keep")
    assert kept == "True" and faults < 16


def test_the_program_keeps_freed_memory_and_its_main_function_does_not():
    """``python -m minivgg.stylize`` calls machine.keep_freed_memory first; main(), which the
    tests and Python callers use, does not (the process is theirs)."""
    code = ("import runpy, sys\nfrom minivgg import machine\n"
            "machine.keep_freed_memory = lambda: print('KEEP_FREED_MEMORY_CALLED')\n"
            "from minivgg.stylize.__main__ import main\nmain(['--help'])\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and "KEEP_FREED_MEMORY_CALLED" not in run.stdout
    code = code.replace("from minivgg.stylize.__main__ import main\nmain(['--help'])\n",
                        "sys.argv = ['stylize', '--help']\n"
                        "runpy.run_module('minivgg.stylize', run_name='__main__')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("KEEP_FREED_MEMORY_CALLED\n")
