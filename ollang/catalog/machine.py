"""The machine a fit is computed for: this one (detected), or one the user describes.

Detection reads free RAM with psutil and free VRAM per NVIDIA GPU with NVML (the
``nvidia-ml-py`` package, imported as ``pynvml``); other GPUs (AMD, Apple, Intel) are not
detected, so on those machines the estimate assumes the CPU unless the user describes
the GPU with ``--gpu``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from ollang.catalog.fit import Machine
from ollang.catalog.sizes import parse_size

__all__ = ["Machine", "described_machine", "gpu_note", "this_machine"]


def _free_ram() -> int:
    """Bytes of RAM available to a new process now (without swapping), 0 if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # psutil missing or failing: fall back on what POSIX says
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return 0


def _nvidia_gpus() -> list[tuple[str, int]]:
    """(name, free bytes) of each NVIDIA GPU NVML reports; none when NVML is not there."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound (no driver), or any driver failure
        return []
    gpus: list[tuple[str, int]] = []
    # A device that fails to answer ends the list (keeping those read so far); shutting
    # down can only fail when the driver went away meanwhile.
    with contextlib.suppress(Exception):
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):  # older nvidia-ml-py versions return bytes
                name = name.decode(errors="replace")
            gpus.append((str(name), int(pynvml.nvmlDeviceGetMemoryInfo(handle).free)))
    with contextlib.suppress(Exception):
        pynvml.nvmlShutdown()
    return gpus


def this_machine() -> Machine:
    """This machine's free RAM and free VRAM per NVIDIA GPU, read now. Never raises."""
    gpus = _nvidia_gpus()
    return Machine(
        ram_bytes=_free_ram(),
        gpus=tuple(free for _, free in gpus),
        gpu_names=tuple(name for name, _ in gpus),
        described=False,
    )


def described_machine(gpus: Sequence[str], ram: str | None) -> Machine:
    """The machine the user describes: ``--gpu 8GB`` (once per GPU) and ``--ram 16GB``.

    Without ``ram``, this machine's free RAM. Sizes follow :func:`parse_size`
    (``GB`` decimal, ``GiB`` binary).

    Raises:
        InvalidInputError: a size that is not one.
    """
    return Machine(
        ram_bytes=_free_ram() if ram is None else parse_size(ram, "--ram"),
        gpus=tuple(parse_size(text, "--gpu") for text in gpus),
        gpu_names=tuple(f"GPU {index} ({text.strip()})" for index, text in enumerate(gpus)),
        described=True,
    )


def gpu_note(machine: Machine) -> str | None:
    """A note for the user when no GPU was detected (so the estimate is for the CPU only)."""
    if machine.gpus or machine.described:
        return None
    return "no GPU found (NVIDIA via NVML); estimates assume CPU only"
