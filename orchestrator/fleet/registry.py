"""The fleet's durable record of each session, in Ray's internal key-value store.

The store lives in the cluster's control service (GCS, on the head node): it outlives any
worker, node or API process. A record says which worker owns the session, what it was
asked to be (its spec), what it should be doing (desired state) and whether an emergency
stop latched it; a restarted worker re-creates its sessions from these records.

Calls are synchronous round trips to the GCS (about a millisecond): workers make them off
their event loop (``asyncio.to_thread``), never on the tick path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from ray.experimental import internal_kv

Desired = Literal["creating", "ready", "running", "stopped"]
_PREFIX = "fleet/session/"
_DELETING = "fleet/deleting/"


def _deleting_key(session_id: str, by: str) -> bytes:
    return f"{_DELETING}{session_id}/{by}".encode()  # ids never hold a "/" (their pattern)


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    owner: int  # worker index
    spec: dict[str, Any]  # SessionSpec.to_dict()
    desired: Desired = "creating"
    latched: bool = False  # emergency stop: comes back stopped until an explicit start
    latch_reason: str = ""
    created_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SessionRecord:
        data = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def with_(self, **changes: Any) -> SessionRecord:
        return replace(self, **changes)


class Registry:
    """Session records under one namespace (the fleet's Ray namespace)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def _key(self, session_id: str) -> bytes:
        return (_PREFIX + session_id).encode()

    def reserve(self, record: SessionRecord) -> bool:
        """Write ``record`` unless the id is taken; False when it was (any API replica)."""
        existed = internal_kv._internal_kv_put(self._key(record.session_id), record.to_json(),
                                               overwrite=False, namespace=self.namespace)
        return not existed

    def put(self, record: SessionRecord) -> None:
        internal_kv._internal_kv_put(self._key(record.session_id), record.to_json(),
                                     overwrite=True, namespace=self.namespace)

    def get(self, session_id: str) -> SessionRecord | None:
        raw = internal_kv._internal_kv_get(self._key(session_id), namespace=self.namespace)
        return None if raw is None else SessionRecord.from_json(raw)

    def update(self, session_id: str, if_owner: int | None = None, **changes: Any
               ) -> SessionRecord | None:
        """Change fields of an existing record; None (and nothing written) when it is gone.
        With ``if_owner``, a record another worker owns is returned as it is, unwritten."""
        record = self.get(session_id)
        if record is None or (if_owner is not None and record.owner != if_owner):
            return record
        record = record.with_(**changes)
        self.put(record)
        return record

    def delete(self, session_id: str) -> None:
        internal_kv._internal_kv_del(self._key(session_id), namespace=self.namespace)

    # A delete under way, by id and by who runs it (an API process: "api-<Ray job id>"; a
    # worker: "worker-<index>"), with when it began (wall clock). A create of the id waits
    # while one is there: the deleter removes rooms named as the new session's will be.
    def mark_deleting(self, session_id: str, by: str, at: float) -> None:
        internal_kv._internal_kv_put(_deleting_key(session_id, by), repr(at).encode(),
                                     overwrite=True, namespace=self.namespace)

    def deletes_of(self, session_id: str) -> dict[str, float]:
        """The deletes of this id under way: who runs each, and since when."""
        prefix = _deleting_key(session_id, "")
        found = {}
        for key in internal_kv._internal_kv_list(prefix, namespace=self.namespace):
            raw = internal_kv._internal_kv_get(key, namespace=self.namespace)
            if raw is not None:  # cleared between the listing and the read
                found[key[len(prefix):].decode()] = float(raw)
        return found

    def clear_deleting(self, session_id: str, by: str) -> None:
        internal_kv._internal_kv_del(_deleting_key(session_id, by), namespace=self.namespace)

    def clear_deletes_by(self, prefix: str) -> int:
        """Remove every mark whose writer starts with ``prefix`` (a worker that restarted:
        its deletes died with it); how many there were."""
        keys = internal_kv._internal_kv_list(_DELETING.encode(), namespace=self.namespace)
        mine = [key for key in keys if key.rsplit(b"/", 1)[-1].startswith(prefix.encode())]
        for key in mine:
            internal_kv._internal_kv_del(key, namespace=self.namespace)
        return len(mine)

    def session_ids(self) -> set[str]:
        """Ids with a record: one listing, no record read."""
        keys = internal_kv._internal_kv_list(_PREFIX.encode(), namespace=self.namespace)
        return {key.decode()[len(_PREFIX):] for key in keys}

    def all(self) -> list[SessionRecord]:
        """Every record: a listing and one read of them all. A read per record took 14-19x
        as long with 64 sessions (``python -m bench.registry_bench``), and this runs every
        second in each API process's refresh."""
        keys = internal_kv._internal_kv_list(_PREFIX.encode(), namespace=self.namespace)
        values = self._read_all(keys)
        # A key missing from the values was deleted between the listing and the read.
        return [SessionRecord.from_json(values[key]) for key in sorted(keys) if key in values]

    def all_one_by_one(self) -> list[SessionRecord]:
        """``all``, a read per record: what it was, the benchmark's baseline."""
        keys = internal_kv._internal_kv_list(_PREFIX.encode(), namespace=self.namespace)
        records = []
        for key in sorted(keys):
            raw = internal_kv._internal_kv_get(key, namespace=self.namespace)
            if raw is not None:
                records.append(SessionRecord.from_json(raw))
        return records

    def _read_all(self, keys: list[bytes]) -> dict[bytes, bytes]:
        if not keys:
            return {}
        # The GCS client's batch read: ray.experimental.internal_kv has no public one.
        client = internal_kv.global_gcs_client
        if client is None:  # as the registry's other calls fail then: a 503, not a 500
            raise ConnectionError("not connected to Ray")
        values: dict[bytes, bytes] = client.internal_kv_multi_get(keys, self.namespace.encode())
        return values

    def owned_by(self, worker: int) -> list[SessionRecord]:
        return [r for r in self.all() if r.owner == worker]
