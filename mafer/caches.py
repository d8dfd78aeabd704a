"""Where the libraries mafer uses keep their caches: never in the installation, never in a
read-only home.

numba (behind UMAP) caches compiled functions next to the library's own source by default, in
site-packages, and else in ``~/.cache/numba``; with both read-only (a container image, a shared
cluster's software tree and a home mounted read-only) it fails: "cannot cache function
'rdist': no locator available". matplotlib, IPython and Jupyter (the pipeline's kernels) write
into the home folder, and Snakemake and others into ``~/.cache``. `use_writable_caches` points
each of them at a writable folder before they are imported; `mafer` commands, the pipeline's
notebook runner and `mafer.embed.project` (before UMAP) call it.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

__all__ = ["THREAD_VARIABLES", "use_writable_caches", "writable_cache_home"]

# Where torch (OpenMP), NumPy/scikit-learn (MKL or OpenBLAS) and numba read their thread counts,
# once, at import: set them before a process or kernel imports those libraries.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def _writable(folder: Path) -> bool:
    """True when a file can be created in ``folder``, or, while it does not exist, in the nearest
    folder above it that does (where it would be made). Asked of the file system itself by
    creating a file; nothing else is left behind."""
    probe_in = folder
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".mafer-probe-", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def _private_temp_folder() -> Path:
    """``<tmp>/mafer-cache-<uid>``, made private; a fresh temporary folder where that name is
    taken by someone else (another user could have made it, or a link, in a shared /tmp)."""
    folder = Path(tempfile.gettempdir()) / f"mafer-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)  # only when not there: then it is ours
        info = os.lstat(folder)
        if stat.S_ISDIR(info.st_mode) and (not hasattr(os, "getuid") or info.st_uid == os.getuid()) \
                and _writable(folder):
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="mafer-cache-"))


def writable_cache_home() -> Path:
    """The user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``) when it is writable, else
    a private folder in the temporary directory."""
    configured = os.environ.get("XDG_CACHE_HOME")
    home = Path(configured) if configured else Path.home() / ".cache"
    return home if _writable(home) else _private_temp_folder()


def _default_dir(variable: str, default: Path) -> Path:
    return Path(os.environ[variable]) if os.environ.get(variable) else default


def use_writable_caches() -> dict[str, str]:
    """Set the cache variables that are not set, where the default is not fit, and return those set.

    - ``XDG_CACHE_HOME``: when ``~/.cache`` is not writable (Snakemake, pip, fontconfig and
      others keep their caches there), a private temporary folder;
    - ``NUMBA_CACHE_DIR``: always, ``<cache home>/numba``, so that numba never writes into the
      installation (its default when that is writable) and works when it is not;
    - ``MPLCONFIGDIR``, ``IPYTHONDIR``, ``JUPYTER_RUNTIME_DIR``: when matplotlib's config folder,
      ``~/.ipython`` or Jupyter's runtime folder (its kernels' connection files) is not writable,
      a folder under the cache home.

    Variables the user set are kept. Call it before numba, matplotlib or a kernel starts: they
    read these once (numba's configuration is reloaded when numba is already imported).
    """
    changed: dict[str, str] = {}

    def put(variable: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[variable] = changed[variable] = str(folder)

    home = Path.home()
    cache_home = writable_cache_home()
    if not os.environ.get("XDG_CACHE_HOME") and cache_home != home / ".cache":
        put("XDG_CACHE_HOME", cache_home)
    if not os.environ.get("NUMBA_CACHE_DIR"):
        put("NUMBA_CACHE_DIR", cache_home / "numba")
        if "numba.core.config" in sys.modules:
            sys.modules["numba.core.config"].reload_config()
    config_home = _default_dir("XDG_CONFIG_HOME", home / ".config")
    if not os.environ.get("MPLCONFIGDIR") and not _writable(config_home / "matplotlib"):
        put("MPLCONFIGDIR", cache_home / "matplotlib")
    if not os.environ.get("IPYTHONDIR") and not _writable(home / ".ipython"):
        put("IPYTHONDIR", cache_home / "ipython")
    data_home = _default_dir("JUPYTER_DATA_DIR", _default_dir("XDG_DATA_HOME", home / ".local" / "share") / "jupyter")
    if not os.environ.get("JUPYTER_RUNTIME_DIR") and not _writable(data_home / "runtime"):
        put("JUPYTER_RUNTIME_DIR", cache_home / "jupyter-runtime")
    return changed
