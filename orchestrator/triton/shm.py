"""System shared-memory slots for Triton requests from one client.

Each slot is one POSIX shared-memory region registered with Triton; a request
writes its inputs and receives its output in one slot, so concurrent requests
use different slots. Slots are reused, grown on demand, re-registered after a
server restart (Triton forgets registrations) and unlinked on close.

A slot whose request got no answer (timed out, cancelled, channel lost) is
abandoned, never reused: Triton still runs that request and writes its output
into the region when done, over whatever the next request put there. Its name
stays registered with the server until it can be unregistered (not in use).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ALIGN = 64
MIN_SLOT_BYTES = 1 << 20
# POSIX shared memory objects are files here on Linux; using them directly (not
# multiprocessing.shared_memory) avoids its resource-tracker helper process.
SHM_DIR = Path("/dev/shm")


def shared_memory_available() -> bool:
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)


class Region:
    """One named POSIX shared-memory object, mapped read-write."""

    def __init__(self, name: str, size: int) -> None:
        self.path = SHM_DIR / name
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            self.buf = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)
        self.size = size

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self.buf.close()
        self.path.unlink(missing_ok=True)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(eq=False)
class Slot:
    name: str  # Triton's region name and (with a leading "/") the POSIX key
    shm: Region
    registered: int = -1  # the client generation it was registered with; -1 = not
    offsets: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return "/" + self.name

    @property
    def size(self) -> int:
        return int(self.shm.size)

    def write(self, arrays: dict[str, np.ndarray]) -> int:
        """Copy inputs in; return the first free (aligned) byte for the output."""
        offset = 0
        self.offsets.clear()
        for name, array in arrays.items():
            view: np.ndarray = np.ndarray(
                array.shape, array.dtype, buffer=self.shm.buf, offset=offset
            )
            view[...] = array
            self.offsets[name] = offset
            offset = _align(offset + array.nbytes)
        return offset

    def read(self, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.ndarray(shape, dtype, buffer=self.shm.buf, offset=offset).copy()

    def destroy(self) -> None:
        self.shm.close()


class SlotPool:
    """Free slots of at least a given size; a new one is created when none fits."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"ortc_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._free: list[Slot] = []
        self._all: list[Slot] = []
        self._count = 0
        self.abandoned: list[str] = []  # names Triton may still hold: unregister when it lets go

    @property
    def slots(self) -> list[Slot]:
        return list(self._all)

    def acquire(self, nbytes: int) -> Slot:
        fitting = [s for s in self._free if s.size >= nbytes]
        if fitting:
            slot = min(fitting, key=lambda s: s.size)
            self._free.remove(slot)
            return slot
        size = max(MIN_SLOT_BYTES, 1 << max(nbytes - 1, 1).bit_length())
        while True:  # a name left behind by a crashed process is not ours to reuse
            self._count += 1
            name = f"{self.prefix}_{self._count}"
            try:
                slot = Slot(name, Region(name, size))
                break
            except FileExistsError:
                continue
        self._all.append(slot)
        return slot

    def release(self, slot: Slot) -> None:
        if slot in self._all:
            self._free.append(slot)

    def discard(self, slot: Slot) -> None:
        """Forget a slot (unlink it) e.g. when Triton refused to register it."""
        if slot in self._all:
            self._all.remove(slot)
        if slot in self._free:
            self._free.remove(slot)
        slot.destroy()

    def abandon(self, slot: Slot) -> None:
        """The server may still write into this slot: drop our side, remember its name."""
        # Recorded even when not registered in this generation: a channel reset marks every
        # slot unregistered, and the server (not restarted) may still hold it.
        self.abandoned.append(slot.name)
        self.discard(slot)  # unlinked here; the server keeps its own mapping until unregistered

    def invalidate(self) -> None:
        """The server may have restarted: every slot must be registered again."""
        for slot in self._all:
            slot.registered = -1

    def close(self) -> None:
        for slot in self._all:
            slot.destroy()
        self._all.clear()
        self._free.clear()
