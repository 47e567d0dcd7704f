"""What the machine offers a run: its float32 matrix-multiply rate and its free memory.

Used by ``--explain`` (the time estimate, :func:`measure_matmul_gflops`), by the memory check
before a real run (:func:`ram_free_bytes`, :func:`gpu_free_bytes`, which device.py chooses
between) and by bench/. It relies on NumPy, the standard library (``/proc/meminfo``, a cgroup v2
folder, ``os.sysconf``, ``ctypes`` for the C library's malloc) and, only for the GPU, the cupy
module it is given. Nothing here knows about VGG (plan.py holds the cost model) or about device
names (device.py translates them).
"""
import ctypes
import os
import platform
import time

import numpy as np


def measure_matmul_gflops(xp=np, *, n=None, repeats=5):
    """The median rate of a float32 n x n matrix product C = A @ B, in GFLOP/s (2 n^3 FLOP each).

    n: 1024 on the CPU, 4096 on the GPU when None (smaller products leave a GPU mostly idle).
    One untimed product first (thread pools, GPU kernels); the GPU is synchronised before every
    clock reading, or only the launch would be timed.
    """
    from miniautograd.backend import synchronize
    n = n or (1024 if xp is np else 4096)
    rng = np.random.default_rng(0)
    a, b = (xp.asarray(rng.standard_normal((n, n), dtype=np.float32)) for _ in range(2))
    c = xp.empty((n, n), dtype=np.float32)
    xp.matmul(a, b, out=c)
    synchronize(xp)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        xp.matmul(a, b, out=c)
        synchronize(xp)
        rates.append(2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return float(np.median(rates))


def ram_free_bytes():
    """Bytes of RAM free for a run (None if unknown): MemAvailable from /proc/meminfo (falling
    back to os.sysconf), capped by a cgroup v2 memory limit when the process runs under one."""
    free = meminfo_available()
    if free is None:
        free = _sysconf_available()
    limit = cgroup_free()
    return free if limit is None else limit if free is None else min(free, limit)


def gpu_free_bytes(cupy):
    """Bytes of GPU memory free for a run: cudaMemGetInfo's free bytes plus the blocks CuPy's
    memory pool holds but does not use."""
    free, _total = cupy.cuda.runtime.memGetInfo()
    return int(free) + int(cupy.get_default_memory_pool().free_bytes())


def meminfo_available(path="/proc/meminfo"):
    """MemAvailable in bytes from a Linux meminfo file; None if the file or the line is missing."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024     # the value is in kB
    except OSError:
        return None
    return None


def _sysconf_available():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_free(folder="/sys/fs/cgroup"):
    """memory.max - memory.current of a cgroup v2 folder in bytes; None without a limit."""
    try:
        with open(os.path.join(folder, "memory.max")) as f:
            limit = f.read().strip()
        with open(os.path.join(folder, "memory.current")) as f:
            used = int(f.read())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4      # glibc's <malloc.h> mallopt parameters


def keep_freed_memory():
    """Ask glibc's malloc to keep the memory of freed arrays for the next ones; True if it did.

    By default glibc gives every large array (over 128 KiB, or up to 32 MiB as its threshold
    adapts) pages of its own (mmap) and returns them to the system when the array is freed. An
    iteration allocates and frees the same large arrays every time, so each one comes back as
    fresh pages that the kernel zeroes and maps one fault at a time: about 26,000 page faults per
    512 x 384 iteration, and a fifth of the time at 512 px, a third at 1024 px (bench/README.md,
    "freed memory kept for reuse"). With mallopt(M_MMAP_MAX, 0) every array comes from the heap,
    and with the trim threshold at its largest the heap keeps what is freed, so the next
    iteration reuses pages already mapped.
    The price: the process stays at its peak resident memory between iterations, and the heap's
    fragmentation adds to that peak (1.73 -> 1.85 GiB at 1024 x 768; 8.7 -> 9.7 GiB at 2048 px
    untiled; tiled runs, whose arrays are small, stayed within their --max-memory).

    A setting of the whole process, made once by a program that owns it (``python -m
    minivgg.stylize``, bench/): importing minivgg never calls it. False, changing nothing, where
    the C library is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
