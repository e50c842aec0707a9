"""The orchestrator's one settings object: environment (ORCHESTRATOR_*) and CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BlendMode = Literal["crossfade", "ensemble", "replace"]
# A list from the environment: JSON (["a", "b"]) or comma-separated (a,b).
Names = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_", env_file=None, extra="ignore", cli_kebab_case=True,
        # inf or nan for a timeout, a gain or a limit boots, then breaks every session (or
        # every tick) with an error that blames the request: refused at start instead.
        allow_inf_nan=False,
    )

    # HTTP API
    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=1, le=65535)
    api_key: SecretStr | None = Field(
        default=None, description="When set, every endpoint but / and /health requires it."
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_no_key(cls, value: object) -> object:
        # docker-compose passes ORCHESTRATOR_API_KEY through as "" when it is not set: a
        # blank key would lock every client out (no key can match it).
        if isinstance(value, str | SecretStr):
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            return None if not text.strip() else value
        return value

    @field_validator("cors_allow_origins", "arena_allowlist", mode="before")
    @classmethod
    def _json_or_commas(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list ({exc.msg}): {value!r}") from exc
        return [item.strip() for item in value.split(",") if item.strip()]

    cors_allow_origins: Names = Field(
        default_factory=lambda: ["*"],
        description="Origins browser pages may call the API from (CORS); ['*'] = any.",
    )

    # Triton
    triton_url: str | None = Field(
        default=None,
        description="gRPC address host:port, or several comma-separated (replicas: each worker "
        "prefers one, and a request that fails is retried once on another). Unset: the local "
        "stack starts its own server.",
    )
    triton_shared_memory: bool = Field(
        default=False, description="Send tensors through system shared memory (same host only)."
    )
    triton_timeout_s: float = Field(default=2.0, gt=0, description="Per-request inference timeout.")
    triton_keepalive_s: float = Field(
        default=0.0, ge=0, le=3600,
        description="gRPC keepalive: ping Triton this often and drop a connection that stops "
        "answering (a host gone without closing it); 0: off. The server must allow pings this "
        "often (Triton: --grpc-keepalive-permit-without-calls=1 "
        "--grpc-http2-max-pings-without-data=0 --grpc-http2-max-ping-strikes=0), or it "
        "closes the connection for too many pings.",
    )
    model_repository: Path = Path("model_repository")
    model_load_timeout_s: float = Field(
        default=120.0, gt=0, description="Wait for Triton to load a model exported on demand."
    )

    # On-demand export of hub repos and checkpoint folders (python -m export.worker)
    export_jobs_dir: Path | None = Field(
        default=None,
        description="The export worker's jobs folder; unset: policy_path must name a served "
        "model or one already exported from the hub id / folder.",
    )
    export_timeout_s: float = Field(default=900.0, gt=0, description="One on-demand export.")

    # Arena
    arena_default_url: str = "http://localhost:8000"
    arena_allowlist: Names = Field(
        default_factory=list,
        description="Extra hosts (host or host:port) sessions may connect to; loopback and the "
        "default server's host are always allowed.",
    )
    arena_timeout_s: float = Field(default=5.0, gt=0)
    arena_loopback_url: str | None = Field(
        default=None,
        description="Where a session's loopback Arena URL (http://localhost:8000, as a page "
        "on this host names the room server) is reached from here; unset: as given. In a "
        "container, where loopback is the container: the room server's service URL.",
    )

    # Fleet (Ray): sessions in worker processes. 0 or 1 worker without a Ray address keeps
    # them in the API's process.
    workers: int = Field(default=0, ge=0, description="Session worker processes (Ray actors).")
    ray_address: str = Field(
        default="", description="Ray cluster to join (host:port); empty: start a local one."
    )
    ray_namespace: str = Field(default="orchestrator", min_length=1)
    ray_connect_timeout_s: float = Field(
        default=60.0, gt=0, description="Boot waits this long for Ray; then serves 503s and "
        "keeps trying.")
    worker_max_sessions: int = Field(default=32, ge=1, description="Sessions one worker takes.")

    # Limits
    max_sessions: int = Field(default=64, ge=1)
    max_cameras_per_session: int = Field(default=8, ge=1)

    # Control defaults (a session may override some of them)
    blend: BlendMode = "crossfade"
    crossfade_ticks: int = Field(default=10, ge=1)
    ensemble_m: float = Field(default=0.01, ge=0)
    margin_ticks: int = Field(default=3, ge=0)
    replan_every: int | None = Field(default=None, ge=1)
    max_step: float | None = Field(default=10.0, gt=0, description="Max change per tick per joint.")
    stale_after_s: float = Field(
        default=0.5, gt=0, description="Observation age that stops refills."
    )
    latency_prior_s: float = Field(default=0.1, gt=0, description="Assumed latency until measured.")
    unread_joints: float | None = Field(
        default=None, ge=-1e6, le=1e6,
        description="What a joint never read reads as, once any joint has been; unset: a "
        "session waits until every joint is read. The RobotHub page sends a joint only once "
        "it moves, its robot starting at 0 (the server it replaces read unsent joints as 0): "
        "0 drives it as that server did.")
    camera_latency_s: float | None = Field(
        default=None, ge=0, le=5, description="Video-path delay (capture to arrival) assumed "
        "for frames whose stream gives no capture time; None: 0.")
    tick_scheduler: Literal["shared", "per_session"] = Field(
        default="shared", description="shared: one timer per process and rate ticks every "
        "session in a stable order; per_session: each session its own timer (the earlier design, "
        "kept for benchmarks).")
    control_nice: int | None = Field(
        default=None, ge=-20, le=19, description="Nice value of the thread that ticks the "
        "sessions (Linux, per thread; e.g. -10 where Triton or robots share the CPUs: ticks run "
        "first, inference waits). Below the current value it needs CAP_SYS_NICE; None: as "
        "started.")
    control_realtime_priority: int | None = Field(
        default=None, ge=1, le=99, description="SCHED_FIFO priority of the thread that ticks "
        "the sessions (Linux): it preempts every ordinary thread when its timer fires; the "
        "threads and processes it starts run as ordinary ones. Needs CAP_SYS_NICE; None: the "
        "ordinary scheduler.")
    gc_freeze: bool = Field(
        default=True, description="At boot, move the objects alive then (imports, app) out "
        "of the garbage collector's reach: a full collection would otherwise walk them all "
        "on the tick thread (~95 ms here). Sessions made later are collected as usual.")
    gc_full_after: int | None = Field(
        default=None, ge=1, le=100_000, description="Generation-1 collections before a full "
        "(generation 2) one may run: CPython's third threshold (10). A full collection walks "
        "every session's objects and stops every session; with tens of sessions it ran every "
        "~26 s here. None: CPython's.")
    gc_paced: bool = Field(
        default=False, description="While sessions tick, the garbage collector runs between "
        "the scheduler's passes (CPython's own thresholds) instead of inside one, where it "
        "delays every session after it. Off by default: measured here its effect on p99 "
        "jitter was within the noise (bench/README.md).")

    # Debug
    log_buffer_size: int = Field(default=2000, ge=10)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Local stack only (`make run`): what to start beside the API.
    arena_port: int = Field(default=8000, ge=1, le=65535,
                            description="Port of the local room server.")
    local_triton_port_base: int = Field(
        default=8100, ge=1, le=65533,
        description="Local Triton's HTTP port; gRPC is +1, metrics +2."
    )
    local_triton_dir: Path = Field(
        default=Path("build/local-triton"), description="Local Triton's derived repository, log."
    )
    start_arena: bool = Field(default=True, description="Start the local room server.")
    demo: bool = Field(
        default=False, description="Also start a simulated robot and a session, show live figures."
    )


def settings_from_cli(argv: list[str] | None, prog: str) -> Settings:
    """Environment first, command line on top (``--triton-url host:port`` ...)."""
    return Settings(
        _cli_parse_args=argv if argv is not None else True,  # type: ignore[call-arg]
        _cli_prog_name=prog,
    )
