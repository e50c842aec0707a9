"""The monitoring profile, checked offline for real: promtool (Debian's ``prometheus``) checks
the Prometheus config, the alert rules and every PromQL expression of the Grafana dashboard;
every metric name they use is scraped from a real orchestrator after a short session with a
simulated robot, or from the real local Triton's metrics port; docker-compose accepts the
profile."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.settings import Settings
from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.triton_env import find_triton_env
from sim_robot.robot import SimRobot
from tests.support.arena import ArenaServerProcess, arena_server_process, free_port
from tests.support.orchestrator import run_orchestrator, wait_for
from tests.support.triton import local_triton, write_tiny_model

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "act-fleet.json"
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
KEY_FILE = "/prometheus/orchestrator_api_key"  # written by the compose service at start
ALERTS = {"SessionInError", "PlanUnderrunsRising", "StaleObservations", "TritonNotReady"}
# Triton reports these on a GPU host only; the local Triton here has no GPU (see below).
GPU_ONLY = re.compile(r"nv_gpu_\w+")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not labels, functions or keywords)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings (label values)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)  # matchers and ranges
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        following = bare[m.end():].lstrip()
        if m.group() not in PROMQL_WORDS and not following.startswith("("):
            names.add(m.group())
    return names


def as_rules(exprs: list[str]) -> str:
    rules = [{"alert": f"Expression{i}", "expr": e} for i, e in enumerate(exprs)]
    return yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})


# ---- promtool ---------------------------------------------------------------------------
def test_prometheus_config_and_alert_rules_pass_promtool(tmp_path: Path) -> None:
    # The config names the key file compose writes at start; point it at a real file here.
    key = tmp_path / "orchestrator_api_key"
    key.write_text("")
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert KEY_FILE in config
    (tmp_path / "prometheus.yml").write_text(config.replace(KEY_FILE, str(key)))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")

    checked = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout + checked.stderr, checked.stdout
    rules = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr

    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    assert {r["alert"] for g in groups for r in g["rules"]} == ALERTS
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in yaml.safe_load(config)["scrape_configs"]}
    assert targets == {"orchestrator": ["orchestrator:8001"], "triton": ["triton:8002"]}


def test_every_dashboard_expression_parses_as_promql(tmp_path: Path) -> None:
    exprs = [e for _, e in dashboard_targets()]
    assert len(exprs) >= 20
    good = tmp_path / "dashboard_rules.yml"
    good.write_text(as_rules(exprs))
    result = promtool("check", "rules", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout, result.stdout
    # The same check refuses a broken expression: it can fail.
    bad = tmp_path / "broken.yml"
    bad.write_text(as_rules([exprs[0], "sum by (session (rate(orchestrator_holds_total[1m]))"]))
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_dashboard_has_the_fleet_and_triton_panels_on_the_provisioned_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    used = {p["datasource"]["uid"] for p in panels if "datasource" in p}
    used |= {t["datasource"]["uid"] for p in panels for t in p.get("targets", [])}
    assert used == {uid}
    wanted = {
        "sessions by state": "orchestrator_sessions",
        "commands sent per second": "orchestrator_commands_sent_total",
        "tick jitter p99": "orchestrator_tick_jitter_seconds_bucket",
        "plan underruns": "orchestrator_plan_underruns_total",
        "holds by reason": "orchestrator_holds_total",
        "safety interventions": "orchestrator_safety_interventions_total",
        "observation age": "orchestrator_observation_age_seconds",
        "inference latency p50 / p99": "orchestrator_inference_latency_seconds_bucket",
        "average batch size": "nv_inference_exec_count",
        "queue time per request": "nv_inference_queue_duration_us",
        "compute time per request": "nv_inference_compute_infer_duration_us",
        "gpu utilisation": "nv_gpu_utilization",
        "gpu memory": "nv_gpu_memory_used_bytes",
    }
    by_title: dict[str, set[str]] = {}
    for title, expr in dashboard_targets():
        by_title.setdefault(title.lower(), set()).update(metric_names(expr))
    for prefix, metric in wanted.items():
        found = [names for title, names in by_title.items() if title.startswith(prefix)]
        assert found and metric in found[0], f"no panel {prefix!r} reading {metric}"
    # Panels do not overlap on Grafana's 24-column grid.
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
        area = {(x, y) for x in xs for y in ys}
        assert g["x"] + g["w"] <= 24 and not area & cells, p["title"]
        cells |= area


def test_metric_name_extraction() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (session, le) (rate(a_bucket{x="y"}[1m]))) / b > 0'
    ) == {"a_bucket", "b"}
    assert metric_names("sum(rate(c_total[5m])) > 0.1 * sum without (kind) (d)") == {"c_total", "d"}


# ---- the names are real ---------------------------------------------------------------
@pytest.fixture(scope="module")
def arena() -> Iterator[ArenaServerProcess]:
    with arena_server_process() as server:
        yield server


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    repository = tmp_path_factory.mktemp("monitoring_repo")
    write_tiny_model(repository)
    with local_triton(repository, work_dir=tmp_path_factory.mktemp("monitoring_triton")) as t:
        yield t


def exposed(text: str) -> set[str]:
    """Series names with at least one sample, as Prometheus stores them (the client's parser
    would rename counters to ``*_total``; Triton's have no such suffix)."""
    lines = (line.strip() for line in text.splitlines())
    return {re.split(r"[{\s]", line, maxsplit=1)[0] for line in lines
            if line and not line.startswith("#")}


@pytest.fixture(scope="module")
async def scraped(triton: LocalTriton, arena: ArenaServerProcess) -> AsyncIterator[dict[str, Any]]:
    """/metrics of a real orchestrator after a short session driven by a simulated robot,
    and the local Triton's metrics after that session's inferences. The session keeps
    running for the module's tests (async tests: the orchestrator answers while they wait)."""
    settings = Settings(triton_url=triton.grpc_url, triton_timeout_s=5.0, latency_prior_s=0.05)
    async with run_orchestrator(settings) as orch:
        sid = f"mon-{uuid.uuid4().hex[:6]}"
        created = await orch.create_session(
            session_id=sid, policy_path="tiny_act", camera_names=["front"],
            arena_server_url=arena.base_url)
        robot = SimRobot(arena.base_url, created["workspace_id"],
                         joint_input=created["joint_input_room_id"],
                         joint_output=created["joint_output_room_id"],
                         cameras=created["camera_room_ids"],
                         joints=[f"joint_{i}" for i in range(6)], rate=30, fps=15,
                         width=32, height=24)
        await robot.start()
        try:
            response = await orch.http.post(f"/sessions/{sid}/start")
            assert response.status_code == 200, response.text
            await wait_for(lambda: len(robot.received) >= 30, 30, "30 commands at the robot")
            metrics = (await orch.http.get("/metrics")).text
            triton_text = urllib.request.urlopen(triton.metrics_url, timeout=10).read().decode()
            yield {"orchestrator": metrics, "triton": triton_text, "orch": orch,
                   "triton_metrics": triton.metrics_url}
        finally:
            await robot.stop()


async def test_every_metric_name_in_dashboard_and_rules_is_exposed(
    scraped: dict[str, Any]
) -> None:
    orchestrator, triton = exposed(scraped["orchestrator"]), exposed(scraped["triton"])
    assert "orchestrator_commands_sent_total" in orchestrator
    assert "nv_inference_count" in triton
    used: dict[str, str] = {}
    for where, expr in [*dashboard_targets(), *(("alerts", e) for e in alert_exprs())]:
        for name in metric_names(expr):
            used.setdefault(name, where)
    gpu = {n for n in used if GPU_ONLY.fullmatch(n)}
    missing = {n: w for n, w in used.items() if n not in orchestrator | triton and n not in gpu}
    assert not missing, f"metric names nobody exposes: {missing}"
    assert gpu == {"nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes"}
    # No GPU here, so Triton reports no nv_gpu_* series. The server's own library must still
    # name them (its compiler splits long literals after 16 bytes, so both halves are looked
    # for): a misspelt GPU metric fails here.
    libs = list(find_triton_env().libs.glob("libtritonserver*.so*"))
    assert libs, "libtritonserver not found in the Triton env"
    binary = libs[0].read_bytes()
    for name in gpu:
        assert name[:16].encode() in binary and name[16:].encode() in binary, name


async def test_alert_inputs_carry_the_labels_the_rules_select(scraped: dict[str, Any]) -> None:
    families = {f.name: f for f in text_string_to_metric_families(scraped["orchestrator"])}
    states = {s.labels["state"] for s in families["orchestrator_sessions"].samples}
    assert "error" in states  # SessionInError selects state="error"
    reasons = {s.labels.get("reason") for s in families["orchestrator_holds"].samples}
    assert reasons and None not in reasons  # StaleObservations selects by reason
    up = [s.value for s in families["orchestrator_triton_up"].samples]
    assert up == [1.0]


def test_compose_monitoring_profile_is_valid_and_mounts_what_exists() -> None:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: .ci/run installs Debian's package"
    result = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "--profile", "monitoring", "config", "-q"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    assert KEY_FILE in " ".join(services["prometheus"]["command"])


async def test_a_real_prometheus_answers_every_dashboard_query_and_evaluates_the_rules(
    scraped: dict[str, Any], triton: LocalTriton, tmp_path: Path
) -> None:
    """Debian's Prometheus, with this config (targets pointed at the running orchestrator
    and local Triton), scrapes both; every non-GPU dashboard query returns series and every
    alert rule evaluates without error; with Triton stopped, TritonNotReady goes pending."""
    orch = scraped["orch"]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    key = tmp_path / "key"
    key.write_text("")
    triton_target = scraped["triton_metrics"].removeprefix("http://").removesuffix("/metrics")
    for job in config["scrape_configs"]:
        target = orch.base_url.removeprefix("http://") if job["job_name"] == "orchestrator" \
            else triton_target
        job["static_configs"] = [{"targets": [target]}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(key)
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: apt-get install prometheus (.ci/run installs it)"
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"),  # noqa: SIM115
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            async def query(expr: str) -> list[Any]:
                answer = (await http.get(f"{api}/query", params={"query": expr})).json()
                assert answer["status"] == "success", (expr, answer)
                result: list[Any] = answer["data"]["result"]
                return result

            async def ready() -> bool:
                with contextlib.suppress(httpx.HTTPError, ValueError):  # not up yet
                    targets = (await http.get(f"{api}/targets")).json()["data"]["activeTargets"]
                    return len(targets) == 2 and all(t["health"] == "up" for t in targets) \
                        and bool(await query("orchestrator_commands_sent_total[10s]"))
                return False

            await wait_for(ready, 60, "Prometheus scraping both targets", interval_s=0.5)
            panels = [(title, expr, any(GPU_ONLY.fullmatch(n) for n in metric_names(expr)))
                      for title, expr in dashboard_targets()]

            async def answered() -> bool:  # rate() over [1m] needs two samples of each series
                return all([await query(e) for _, e, gpu in panels if not gpu])

            with contextlib.suppress(AssertionError):  # the per-panel checks below say which
                await wait_for(answered, 60, "every dashboard query answered", interval_s=1)
            for title, expr, gpu in panels:
                result = await query(expr)
                if gpu:
                    assert result == [], (title, expr)  # no GPU here
                else:
                    assert result, f"panel {title!r}: no series for {expr}"

            async def evaluated() -> bool:
                groups = (await http.get(f"{api}/rules")).json()["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return len(rules) == len(ALERTS) and all(r.get("lastEvaluation", "").find(
                    "0001-01-01") < 0 for r in rules)

            await wait_for(evaluated, 30, "alert rules evaluated", interval_s=0.5)
            groups = (await http.get(f"{api}/rules")).json()["data"]["groups"]
            rules = {r["name"]: r for g in groups for r in g["rules"]}
            assert set(rules) == ALERTS
            for name, rule in rules.items():
                assert rule["health"] == "ok", (name, rule.get("lastError"))
            # No session is in error and Triton is up. (Underruns and stale observations
            # may be real on a loaded machine: those two rules are only evaluated here.)
            for name in ("SessionInError", "TritonNotReady"):
                assert rules[name]["state"] == "inactive", (name, rules[name]["alerts"])

            # Triton goes away for real: its alert turns pending (firing after its `for`).
            triton.stop()

            async def triton_alert() -> bool:
                groups = (await http.get(f"{api}/rules")).json()["data"]["groups"]
                states = {r["name"]: r["state"] for g in groups for r in g["rules"]}
                return states["TritonNotReady"] in ("pending", "firing")

            await wait_for(triton_alert, 60, "TritonNotReady pending", interval_s=0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if not triton.is_running():
            triton.start()
