# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Just-in-time build of the CPU kernel: compiled once per machine on first import, then loaded from a cache.

Why not at install time: building a torch extension inside pip's isolated build environment would download a
multi-GB torch build. The sources ship as package data instead and are compiled with the torch that is installed,
through `torch.utils.cpp_extension.load` (ninja), into
`$TORCH_EXTENSIONS_DIR` (default `~/.cache/torch_extensions`) under a name that hashes the sources, the flags and the
torch and Python versions, so an upgrade never loads a stale library. A file lock serialises concurrent first imports
(pytest-xdist workers, several `accelerate` processes); a library that fails to load is rebuilt once.

The binary carries AVX-512, AVX2 and generic code paths and picks one from CPUID at run time, so no `-march=native`:
a cache directory shared between machines with different CPUs stays valid.

Environment: `INHIBIDISTILBERT_KERNELS=0` disables the kernel (the model then runs the cdist form);
`INHIBIDISTILBERT_KERNELS_VERBOSE=1` prints the compiler's output.
"""

import contextlib
import hashlib
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCES = ("inhibitor_cpu.cpp", "inhibitor_int8.cpp", "inhibitor_ops.cpp")
HEADERS = ("inhibitor_cpu.h",)
# -O3 with vector extensions per instruction set (see inhibitor_cpu.cpp); FMA contraction on purpose; OpenMP for
# at::parallel_for, which then runs on torch's own thread pool (the same libgomp, loaded once).
CFLAGS = ("-O3", "-ffp-contract=fast", "-fno-math-errno", "-Wno-psabi", "-fopenmp")
LDFLAGS = ("-fopenmp",)
OPS_NAMESPACE = "inhibidistilbert"


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def disabled() -> bool:
    """Whether `INHIBIDISTILBERT_KERNELS=0` (or off/false/no) asks for the pure-PyTorch path."""
    return os.environ.get("INHIBIDISTILBERT_KERNELS", "").strip().lower() in ("0", "false", "no", "off")


def library_name() -> str:
    """Extension name: a hash of sources, flags, torch and Python, so that every change builds afresh."""
    digest = hashlib.sha256()
    for name in SOURCES + HEADERS:
        digest.update(name.encode())
        digest.update((PACKAGE_DIR / name).read_bytes())
    for part in (*CFLAGS, *LDFLAGS, torch.__version__, sys.version, platform.machine(), platform.system()):
        digest.update(part.encode())
    return f"inhibidistilbert_kernels_{digest.hexdigest()[:16]}"


def build_directory(name: str) -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if not root:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(cache, "torch_extensions")
    flavour = f"py{sys.version_info.major}{sys.version_info.minor}_{'cu' if torch.version.cuda else 'cpu'}"
    return Path(root) / flavour / name


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive advisory lock (released by the OS if the holder dies, unlike a lock file)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock; torch's own baton still guards the build
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile(name: str, build_dir: Path) -> None:
    from torch.utils.cpp_extension import load

    (build_dir / "lock").unlink(missing_ok=True)  # torch's baton, stale if a build was killed (we hold our lock)
    load(
        name=name,
        sources=[str(PACKAGE_DIR / source) for source in SOURCES],
        extra_cflags=list(CFLAGS),
        extra_ldflags=list(LDFLAGS),
        extra_include_paths=[str(PACKAGE_DIR)],
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=_truthy("INHIBIDISTILBERT_KERNELS_VERBOSE"),
    )


def load_library() -> dict:
    """Build (first time) and load the operators `torch.ops.inhibidistilbert.*`; returns where and how long.

    Raises `RuntimeError` (or whatever the compiler toolchain raises) when the library cannot be built or loaded.
    """
    if hasattr(torch.ops, OPS_NAMESPACE) and hasattr(getattr(torch.ops, OPS_NAMESPACE), "inhibitor_forward"):
        return {"library": None, "build_seconds": 0.0, "built": False}  # already loaded in this process
    if sys.platform == "win32":
        raise RuntimeError("the CPU kernel is built with GCC or Clang vector extensions; Windows is not supported")
    name = library_name()
    build_dir = build_directory(name)
    build_dir.mkdir(parents=True, exist_ok=True)
    library = build_dir / f"{name}.so"
    built, seconds = False, 0.0
    with _file_lock(build_dir / ".inhibidistilbert.lock"):
        if library.exists():
            try:
                torch.ops.load_library(str(library))
                return {"library": str(library), "build_seconds": 0.0, "built": False}
            except OSError as err:  # a truncated library from an interrupted build: rebuild it
                logger.warning("Rebuilding the inhibitor CPU kernel: loading %s failed (%s).", library, err)
                library.unlink(missing_ok=True)
        logger.warning(
            "Compiling the inhibitor CPU kernel (once per machine and torch version, about 20 s) into %s.", build_dir
        )
        start = time.perf_counter()
        _compile(name, build_dir)  # also loads the library
        built, seconds = True, time.perf_counter() - start
    return {"library": str(library), "build_seconds": seconds, "built": built}
