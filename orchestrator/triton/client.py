"""The orchestrator's Triton client (gRPC, asyncio).

Thin over ``tritonclient.grpc.aio``: it adds per-request timeouts, typed errors
the session layer can act on, reconnection after a server restart, optional
system shared memory and the model contract read from Triton's model config.

Its errors (errors.py): ``TritonUnavailable`` (no server: retry later),
``ModelNotReady`` (model missing or unloaded), ``InferenceTimeout``, ``BadInput``
(wrong names, shapes or dtypes: nothing was sent, or the server refused it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import grpc
import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from orchestrator.triton.channel import Deadline, channel_args, is_local
from orchestrator.triton.errors import (
    BadInput,
    InferenceTimeout,
    ModelNotReady,
    SharedMemoryLost,
    TritonBusy,
    TritonError,
    TritonUnavailable,
    translate,
)
from orchestrator.triton.model_contract import ACTION_OUTPUT, ModelContract, contract_from_config
from orchestrator.triton.shm import Slot, SlotPool, shared_memory_available
from orchestrator.triton.signature import ModelSignature, TensorSpec, check_inputs

log = logging.getLogger(__name__)

# Health probes (/health, /metrics, status): well inside a health check's own 2-3 s and a
# scrape's interval, where the control timeout would let a stalled server hang them 10 s.
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class ModelStatistics:
    inference_count: int  # requests (batch elements) served
    execution_count: int  # model runs: fewer than inferences when requests were batched
    batch_sizes: Mapping[int, int]  # executed batch size -> number of executions

    @property
    def average_batch_size(self) -> float:
        return self.inference_count / self.execution_count if self.execution_count else 0.0


class TritonClient:
    """One gRPC connection to a Triton server, shared by all sessions of a process.

    ``shared_memory``: ``True`` sends inputs and receives outputs through system
    shared memory (Triton on the same host), ``False`` plain gRPC, ``"auto"``
    shared memory when ``url`` is a loopback address (falling back to plain gRPC
    if the server refuses to register the regions).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 1.0,
        control_timeout_s: float = 10.0,
        shared_memory: bool | Literal["auto"] = False,
        shm_prefix: str | None = None,
        keepalive_s: float = 0.0,
    ) -> None:
        self.url = url
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_s
        self.control_timeout_s = control_timeout_s
        if shared_memory == "auto":
            shared_memory = is_local(url) and shared_memory_available()
        self._pool: SlotPool | None = SlotPool(shm_prefix) if shared_memory else None
        self._client: InferenceServerClient | None = None
        self._generation = 0  # bumped each time the channel is recreated
        self._signatures: dict[tuple[str, str], ModelSignature] = {}
        self._retired: list[SlotPool] = []
        self._sweeper: asyncio.Task[None] | None = None  # unregisters abandoned regions
        self._next_sweep = 0.0
        self._closed = False

    @property
    def uses_shared_memory(self) -> bool:
        return self._pool is not None

    # ---- connection --------------------------------------------------------
    def _grpc(self) -> InferenceServerClient:
        if self._closed:
            raise TritonError("the Triton client is closed")
        if self._client is None:
            self._client = InferenceServerClient(
                self.url, channel_args=channel_args(self.keepalive_s))
        return self._client

    async def _reset(self, generation: int) -> None:
        """Drop the channel after the server went away (once per failure wave)."""
        if generation != self._generation or self._client is None:
            return
        old, self._client = self._client, None
        self._generation += 1
        self._signatures.clear()
        if self._pool is not None:
            self._pool.invalidate()
        await asyncio.shield(old.close())

    async def _call(self, what: str, method: str, *args: Any, timeout_s: float | None = None,
                    **kwargs: Any) -> Any:
        generation = self._generation
        timeout = self.control_timeout_s if timeout_s is None else timeout_s
        try:
            fn = getattr(self._grpc(), method)
            async with asyncio.timeout(timeout + 1.0):  # guard; gRPC's deadline comes first
                return await fn(*args, client_timeout=timeout, **kwargs)
        except InferenceServerException as exc:
            error = translate(exc, what)
        except TimeoutError:
            error = InferenceTimeout(f"{what}: no answer within {timeout:.3g} s")
        except grpc.aio.UsageError as exc:  # the channel was closed under this call
            error = TritonUnavailable(f"{what}: {exc}")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this caller was cancelled: not the server's doing
            # grpc.aio cancels the calls in flight on a channel another call's failure closed
            error = TritonUnavailable(f"{what}: the channel was closed under this call")
        # A refusal from a live server leaves the channel as it is: closing it would fail
        # every other session's request in flight on it.
        if isinstance(error, TritonUnavailable) and not isinstance(
                error, SharedMemoryLost | TritonBusy):
            await self._reset(generation)
        raise error

    # ---- health ------------------------------------------------------------
    async def is_server_ready(self, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
        """Never raises: False when the server is down, unreachable or slow."""
        try:
            return bool(await self._call("server ready", "is_server_ready", timeout_s=timeout_s))
        except Exception:
            return False

    async def is_model_ready(
        self, name: str, version: str = "", timeout_s: float | None = None
    ) -> bool:
        """Never raises: False when the model is not loaded or the server is down."""
        try:
            return bool(
                await self._call(
                    f"model {name!r} ready", "is_model_ready", name, version, timeout_s=timeout_s
                )
            )
        except Exception:
            return False

    async def repository_index(self) -> list[tuple[str, str, str]]:
        """(name, version, state) of each model in the server's repository; READY = served."""
        response = await self._call("repository index", "get_model_repository_index")
        return [(m.name, m.version, m.state) for m in response.models]

    # ---- model config / contract -------------------------------------------
    async def model_config(self, name: str, version: str = "") -> mc.ModelConfig:
        response = await self._call(f"config of {name!r}", "get_model_config", name, version)
        return response.config

    async def contract(self, name: str, version: str = "") -> ModelContract:
        """The model's contract (cameras, image sizes, joints, chunk size) from its config."""
        config = await self.model_config(name, version)
        return contract_from_config(config, version or None)

    async def signature(self, name: str, version: str = "", timeout_s: float | None = None
                        ) -> ModelSignature:
        key = (name, version)
        if key not in self._signatures:
            meta = await self._call(f"metadata of {name!r}", "get_model_metadata", name, version,
                                    timeout_s=timeout_s)

            def specs(tensors: Any) -> dict[str, TensorSpec]:
                return {
                    t.name: TensorSpec(np.dtype(triton_to_np_dtype(t.datatype)), tuple(t.shape))
                    for t in tensors
                }

            self._signatures[key] = ModelSignature(specs(meta.inputs), specs(meta.outputs))
        return self._signatures[key]

    # ---- model control -----------------------------------------------------
    async def load_model(self, name: str) -> None:
        """(Re)load a model; picks up new versions written to the server's repository."""
        self._forget(name)
        await self._call(f"load {name!r}", "load_model", name)

    async def unload_model(self, name: str) -> None:
        self._forget(name)
        await self._call(f"unload {name!r}", "unload_model", name)

    def _forget(self, name: str) -> None:
        for key in [k for k in self._signatures if k[0] == name]:
            del self._signatures[key]

    async def statistics(self, name: str, version: str = "", timeout_s: float | None = None
                         ) -> ModelStatistics:
        response = await self._call(
            f"statistics of {name!r}", "get_inference_statistics", name, version,
            timeout_s=timeout_s)
        inferences = executions = 0
        sizes: dict[int, int] = {}
        for stats in response.model_stats:
            inferences += stats.inference_count
            executions += stats.execution_count
            for batch in stats.batch_stats:
                sizes[batch.batch_size] = sizes.get(batch.batch_size, 0) + batch.compute_infer.count
        return ModelStatistics(inferences, executions, dict(sorted(sizes.items())))

    # ---- inference ---------------------------------------------------------
    async def infer(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray],
        version: str = "",
        timeout_s: float | None = None,
        output: str = ACTION_OUTPUT,
    ) -> np.ndarray:
        """Run the model on a batch; returns ``output`` (e.g. ``action`` [B, chunk, dim]).
        ``timeout_s`` bounds the whole request, the metadata and shared-memory calls it may
        need included: an answer later than that is a stale one."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        left = Deadline(f"infer {name!r}", timeout).left
        signature = await self.signature(name, version, timeout_s=left())
        arrays = check_inputs(name, signature, inputs)
        if output not in signature.outputs:
            raise BadInput(f"model {name!r} has no output {output!r}")
        batch = next(iter(arrays.values())).shape[0] if arrays else 0
        out_spec = signature.outputs[output]
        out_shape = tuple(batch if d == -1 and i == 0 else d for i, d in enumerate(out_spec.shape))
        if self._pool is not None and -1 not in out_shape:
            return await self._infer_shm(name, version, arrays, output, out_spec, out_shape,
                                         left)
        infer_inputs = []
        for key, array in arrays.items():
            item = InferInput(key, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(array)
            infer_inputs.append(item)
        result = await self._infer_call(name, version, infer_inputs,
                                        [InferRequestedOutput(output)], left())
        return result.as_numpy(output)

    async def _infer_call(self, name: str, version: str, inputs: list[InferInput],
                          outputs: list[InferRequestedOutput], timeout: float) -> Any:
        try:
            return await self._call(f"infer {name!r}", "infer", name, inputs,
                                    model_version=version, outputs=outputs, timeout_s=timeout)
        except (BadInput, ModelNotReady):
            self._forget(name)  # the model may have changed under us
            raise

    async def _infer_shm(self, name: str, version: str, arrays: dict[str, np.ndarray],
                         output: str, out_spec: TensorSpec, out_shape: tuple[int, ...],
                         left: Callable[[], float]) -> np.ndarray:
        pool = self._pool  # a fallback to plain gRPC may retire it under this request
        assert pool is not None
        out_bytes = int(np.prod(out_shape)) * out_spec.dtype.itemsize
        need = sum(a.nbytes + 64 for a in arrays.values()) + out_bytes
        slot = pool.acquire(need)
        answered = True  # False while Triton may still write into the slot
        try:
            for attempt in (0, 1):
                if not await self._register(slot, left()):
                    return await self._infer_plain_fallback(name, version, arrays, output,
                                                            left())
                out_offset = slot.write(arrays)
                infer_inputs = []
                for key, array in arrays.items():
                    item = InferInput(key, list(array.shape), np_to_triton_dtype(array.dtype))
                    item.set_shared_memory(slot.name, array.nbytes, slot.offsets[key])
                    infer_inputs.append(item)
                requested = InferRequestedOutput(output)
                requested.set_shared_memory(slot.name, out_bytes, out_offset)
                answered = False
                try:
                    await self._infer_call(name, version, infer_inputs, [requested], left())
                except SharedMemoryLost:
                    # A restarted server forgot our regions without us seeing it go down.
                    answered = True
                    if attempt == 1:
                        raise
                    pool.invalidate()
                    continue
                except (InferenceTimeout, TritonUnavailable):
                    raise  # no answer: the server may still be running the request
                except TritonError:
                    answered = True  # the server refused the request: it is done with it
                    raise
                answered = True
                return slot.read(out_offset, out_shape, out_spec.dtype)
            raise AssertionError("unreachable")
        finally:
            if answered:
                pool.release(slot)
            else:  # a cancellation too: Triton runs the request whoever stopped waiting
                pool.abandon(slot)
            self._sweep(pool)

    async def _register(self, slot: Slot, timeout_s: float) -> bool:
        if slot.registered == self._generation:
            return True
        generation = self._generation
        left = Deadline("register shm", timeout_s).left
        try:  # the name may be registered from before a lost connection
            await self._call("unregister shm", "unregister_system_shared_memory", slot.name,
                             timeout_s=left())
            await self._call("register shm", "register_system_shared_memory", slot.name,
                             slot.key, slot.size, timeout_s=left())
        except (TritonUnavailable, InferenceTimeout):
            raise
        except TritonError as exc:
            log.warning("Triton at %s refused shared memory (%s); using plain gRPC", self.url, exc)
            return False
        slot.registered = generation
        return True

    def _sweep(self, pool: SlotPool) -> None:
        """Unregister abandoned regions in the background, one sweep at a time, at most once a
        second: Triton refuses while the request given up on still runs."""
        now = asyncio.get_running_loop().time()
        if not pool.abandoned or now < self._next_sweep or self._closed:
            return
        if self._sweeper is None or self._sweeper.done():
            self._next_sweep = now + 1.0
            self._sweeper = asyncio.create_task(self._unregister_abandoned(pool),
                                                name="triton-shm-sweep")

    async def _unregister_abandoned(self, pool: SlotPool, timeout_s: float | None = None) -> None:
        for name in list(pool.abandoned):
            try:
                await self._call("unregister shm", "unregister_system_shared_memory", name,
                                 timeout_s=timeout_s)
            except TritonError:
                continue  # still in use, or the server is away: the next sweep tries again
            if name in pool.abandoned:
                pool.abandoned.remove(name)

    async def _infer_plain_fallback(self, name: str, version: str, arrays: dict[str, np.ndarray],
                                    output: str, timeout: float) -> np.ndarray:
        # Other requests may still be using slots: unlink them only on close().
        if self._pool is not None:
            self._retired.append(self._pool)
            self._pool = None
        return await self.infer(name, arrays, version, timeout, output)

    # ---- lifecycle ---------------------------------------------------------
    async def close(self) -> None:
        """Unregister and remove shared memory, close the channel (idempotent)."""
        if self._closed:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sweeper
        if self._pool is not None and self._client is not None:
            await self._unregister_abandoned(self._pool, timeout_s=2.0)
            for slot in self._pool.slots:
                if slot.registered == self._generation:
                    try:
                        await self._call("unregister shm", "unregister_system_shared_memory",
                                         slot.name, timeout_s=2.0)
                    except TritonError:
                        break  # server gone: nothing left to unregister
        for pool in [*self._retired, *([self._pool] if self._pool else [])]:
            pool.close()
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> TritonClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
