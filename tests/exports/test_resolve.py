"""orchestrator.exports.resolve against a real huggingface_hub on an offline hub cache."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.exports.resolve import (
    HubOptions,
    HubUnreachable,
    SourceError,
    resolve_folder,
    resolve_hub,
    resolve_source,
)
from orchestrator.exports.source import FolderSource, HubSource, parse_source, source_matches
from orchestrator.sessions.errors import DependencyUnavailable
from orchestrator.sessions.provision import ModelProvider
from orchestrator.settings import Settings
from orchestrator.triton.client import TritonClient
from tests.support.hub import add_repo, train_config

ACT_CONFIG = json.dumps(
    {
        "type": "act",
        "input_features": {
            "observation.state": {"type": "STATE", "shape": [6]},
            "observation.images.front": {"type": "VISUAL", "shape": [3, 48, 64]},
            "observation.images.wrist": {"type": "VISUAL", "shape": [3, 48, 64]},
        },
        "output_features": {"action": {"type": "ACTION", "shape": [6]}},
    }
)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


def _files(config: str = ACT_CONFIG) -> dict[str, str | bytes]:
    return {
        "config.json": config,
        "train_config.json": train_config("org/data"),
        "model.safetensors": b"weights",
    }


def test_options_follow_the_environment(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = HubOptions.from_env()
    assert options.cache_dir == hub / "hub"
    assert options.offline
    monkeypatch.setenv("HF_HUB_CACHE", str(hub / "elsewhere"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    options = HubOptions.from_env()
    assert (options.cache_dir, options.offline, options.token) == (hub / "elsewhere", False, "hf_x")


@pytest.mark.parametrize("symlinks", [True, False])
def test_resolve_main_and_shas(hub: Path, symlinks: bool) -> None:
    old = add_repo(hub, "org/policy", _files(), refs=(), symlinks=symlinks, salt="old")
    sha = add_repo(hub, "org/policy", _files(), symlinks=symlinks)
    assert old != sha
    resolved = resolve_hub(HubSource("org/policy", None))
    assert resolved.revision == sha
    assert resolved.policy_type == "act"
    assert resolved.cameras == ("front", "wrist")
    assert resolved.dataset_repo_id == "org/data"
    assert resolved.canonical == f"hf:org/policy@{sha}"
    assert resolve_hub(HubSource("org/policy", old)).revision == old
    # A short sha names the one cached commit it starts, offline as online.
    assert resolve_hub(HubSource("org/policy", old[:8])).revision == old
    info = resolve_hub(HubSource("org/policy", old[:8])).metadata()
    assert info["source_revision_requested"] == old[:8]
    assert source_matches(info, HubSource("org/policy", old))
    assert not source_matches(info, HubSource("org/policy", None))


def _error(source: HubSource) -> str:
    with pytest.raises(SourceError) as info:
        resolve_hub(source)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_hub_sources(hub: Path) -> None:
    add_repo(hub, "org/policy", _files())
    add_repo(hub, "org/diffusion", _files(ACT_CONFIG.replace('"act"', '"diffusion"')))
    add_repo(hub, "org/readme", {"README.md": "# not a policy"})
    assert "org/nothing is not in the offline hub cache" in _error(HubSource("org/nothing", None))
    message = _error(HubSource("org/policy", "v9"))
    assert "revision 'v9' of hub repo org/policy is not in the offline hub cache" in message
    assert "cached: main" in message
    assert "not an ACT checkpoint" in _error(HubSource("org/diffusion", None))
    assert "'diffusion'" in _error(HubSource("org/diffusion", None))
    assert "not a LeRobot policy checkpoint" in _error(HubSource("org/readme", None))


def test_folders(tmp_path: Path) -> None:
    run = tmp_path / "run" / "checkpoints" / "last"
    (run / "pretrained_model").mkdir(parents=True)
    for name, data in _files().items():
        path = run / "pretrained_model" / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    resolved = resolve_source(FolderSource(run))
    assert resolved.cameras == ("front", "wrist")
    assert resolved.revision is None
    assert resolved.path == run / "pretrained_model"
    assert resolved.metadata()["source"] == f"dir:{run}"
    with pytest.raises(SourceError, match="checkpoint folder not found"):
        resolve_folder(FolderSource(tmp_path / "missing"))
    (run / "pretrained_model" / "model.safetensors").unlink()
    with pytest.raises(SourceError, match=r"no model\.safetensors"):
        resolve_folder(FolderSource(run))


def test_a_config_nested_past_the_parsers_depth_is_a_source_error(tmp_path: Path) -> None:
    """json.loads raises RecursionError on deep nesting: it came out of a create as a 500."""
    folder = tmp_path / "deep"
    folder.mkdir()
    for name, data in _files().items():
        (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    (folder / "config.json").write_text("[" * 100_000)
    with pytest.raises(SourceError, match="cannot read"):
        resolve_folder(FolderSource(folder))


def test_parse_then_resolve(hub: Path) -> None:
    sha = add_repo(hub, "org/policy", _files())
    source = parse_source(f"org/policy@{sha}")
    assert isinstance(source, HubSource)
    assert resolve_source(source).revision == sha


class _StandInHub(http.server.BaseHTTPRequestHandler):
    """Answers the hub API's repo-info call with the hub's own error headers.

    A stand-in: the tests have no network, so the hub's online refusals (unknown repo,
    unknown revision, gated repo) cannot be caused for real; everything on the client side
    (huggingface_hub's error mapping, our messages) is real.
    """

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        code, error = 404, "RepoNotFound"
        if path.startswith("/api/models/org/policy/revision/"):
            code, error = 404, "RevisionNotFound"
        elif path.startswith("/api/models/org/gated/"):
            code, error = 403, "GatedRepo"
        body = json.dumps({"error": f"{error} (stand-in hub)"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", error)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


def _hub_at(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub online, at `url`, with an empty cache of the test's own."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


@pytest.fixture
def online_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StandInHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    _hub_at(url, tmp_path, monkeypatch)
    yield url
    server.shutdown()
    server.server_close()


def test_online_refusals_are_told_apart(online_hub: str) -> None:
    assert "org/nothing not found on the hub (private? set HF_TOKEN)" in _error(
        HubSource("org/nothing", None)
    )
    assert "revision 'v9' does not exist in hub repo org/policy" in _error(
        HubSource("org/policy", "v9")
    )
    assert "org/gated is gated" in _error(HubSource("org/gated", None))


@pytest.fixture
def unreachable_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    _hub_at(url, tmp_path, monkeypatch)
    return url


async def test_a_hub_that_does_not_answer_is_an_outage_not_a_bad_request(
    unreachable_hub: str,
) -> None:
    """It was a 400, which tells a client not to retry a request that was fine."""
    with pytest.raises(HubUnreachable, match="cannot reach the hub for hub repo org/policy"):
        resolve_source(HubSource("org/policy", None))
    settings = Settings(triton_url="127.0.0.1:1")
    async with TritonClient(settings.triton_url or "") as triton:
        provider = ModelProvider(settings, triton)
        with pytest.raises(DependencyUnavailable, match="cannot reach the hub"):
            await provider.check_source(HubSource("org/policy", None))
