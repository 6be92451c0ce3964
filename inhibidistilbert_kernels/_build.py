# Copyright 2026 The InhibiDistilBERT authors. Licensed under the Apache License, Version 2.0.
"""Just-in-time build of the CPU kernels: compiled on the first call that needs them, then loaded from a cache.

Nothing happens at import: `library_error()` builds (once per machine) and loads the library the first time a probe
or a kernel asks for it, and remembers the outcome for the process.

Why not at install time: building a torch extension inside pip's isolated build environment would download a
multi-GB torch build. The sources ship as package data instead and are compiled with the torch that is installed,
through `torch.utils.cpp_extension.load` (ninja), under `$TORCH_EXTENSIONS_DIR` (default `~/.cache/torch_extensions`)
in a folder named by a hash of the sources, the flags and the torch and Python versions, so an upgrade never loads a
stale library. A file lock serialises concurrent first calls (pytest-xdist workers, several `accelerate` processes).

The cached library is never loaded unchecked: each build runs in a fresh temporary folder, the library's SHA-256 is
written next to it, and the library is renamed into place last (a rename is atomic). A library whose checksum does
not match (a truncated or half-copied file) is rebuilt instead of being mapped, which could kill the process with
SIGBUS.

The binary carries AVX-512, AVX2 and generic code paths and picks one from CPUID at run time, so no `-march=native`:
a cache folder shared between machines with different CPUs stays valid.

Environment: `INHIBIDISTILBERT_KERNELS=0` turns the kernels off (the probes say so and the model runs its own
PyTorch forms); `INHIBIDISTILBERT_KERNELS_VERBOSE=1` prints the compiler's output.
"""

import contextlib
import hashlib
import logging
import os
import platform
import sys
import tempfile
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
DISABLED_REASON = "the C++ kernels are turned off by INHIBIDISTILBERT_KERNELS=0"


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def disabled() -> bool:
    """Whether `INHIBIDISTILBERT_KERNELS=0` (or off/false/no) asks for the pure-PyTorch paths."""
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
    except ImportError:  # not POSIX: no lock; each build still writes its own temporary folder
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def is_valid(library: Path) -> bool:
    """Whether `library` is exactly the file its build recorded (size and SHA-256), so mapping it is safe."""
    record = checksum_path(library)
    if not (library.is_file() and record.is_file()):
        return False
    try:
        return record.read_text().strip() == file_sha256(library)
    except OSError:
        return False


def _compile_and_load(name: str, build_dir: Path) -> Path:
    """Compile the library into `build_dir` (a fresh folder), load it into this process and return its path."""
    from torch.utils.cpp_extension import load

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
    return build_dir / f"{name}.so"


def _install(built: Path, library: Path) -> None:
    """Record the checksum, then rename the freshly built library into place (atomic within one file system).

    A rename keeps the file's identity, so the copy this process has already loaded stays the one in the cache.
    """
    with open(built, "rb") as handle:
        os.fsync(handle.fileno())
    record = checksum_path(library)
    staged = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    staged.write_text(file_sha256(built) + "\n")
    os.replace(staged, record)
    os.replace(built, library)


def load_library() -> dict:
    """Build (first time, or when the cached file fails its checksum) and load `torch.ops.inhibidistilbert.*`.

    Returns where the library is and how long a build took. Raises whatever the toolchain raises when the library
    cannot be built (no compiler, no ninja, a compile error).
    """
    if hasattr(torch.ops, OPS_NAMESPACE) and hasattr(getattr(torch.ops, OPS_NAMESPACE), "inhibitor_forward"):
        return {"library": None, "build_seconds": 0.0, "built": False}  # already loaded in this process
    if sys.platform == "win32":
        raise RuntimeError("the CPU kernel is built with GCC or Clang vector extensions; Windows is not supported")
    name = library_name()
    cache_dir = build_directory(name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    library = cache_dir / f"{name}.so"
    with _file_lock(cache_dir / ".inhibidistilbert.lock"):
        if not is_valid(library):
            if library.exists():
                logger.warning("Rebuilding the inhibitor CPU kernel: %s does not match its recorded checksum.", library)
            logger.warning(
                "Compiling the inhibitor CPU kernels (once per machine and torch version, about 20 s) into %s.",
                cache_dir,
            )
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="build-", dir=cache_dir) as scratch:
                _install(_compile_and_load(name, Path(scratch)), library)
            return {"library": str(library), "build_seconds": time.perf_counter() - start, "built": True}
        torch.ops.load_library(str(library))
    return {"library": str(library), "build_seconds": 0.0, "built": False}


_STATE: dict = {}


def library_error() -> str | None:
    """None when the operators are loaded (building them on the first call), else why not, in one line.

    The outcome of the build is cached for the process; `INHIBIDISTILBERT_KERNELS=0` is read on every call.
    """
    if disabled():
        return DISABLED_REASON
    if "error" not in _STATE:
        try:
            _STATE["info"] = load_library()
            _STATE["error"] = None
            from . import fused  # noqa: F401  (registers the operators' fake kernels for torch.compile)

            fused.register_fakes()
        except Exception as err:  # no compiler, no ninja, a compile error: report it, never crash the caller
            message = " ".join(f"{type(err).__name__}: {err}".split())
            first_error = message.find("error:")  # a compiler's log: show its first error, not the command line
            if len(message) > 500 and first_error > 0:
                message = f"{message[:120]} ... {message[first_error : first_error + 380]}"
            _STATE["error"] = (
                f"the C++ kernels could not be built ({message[:500]}); they need a C++ compiler (g++ or clang++) and "
                "ninja (`pip install ninja`); INHIBIDISTILBERT_KERNELS_VERBOSE=1 shows the build log"
            )
    return _STATE["error"]


def build_info() -> dict | None:
    """Where the loaded library lives and whether this process built it (None if it is not loaded)."""
    return _STATE.get("info") if library_error() is None else None
