"""The operator's console in a real browser (Debian's headless Chromium driven by Playwright)
against the real stack: orchestrator on uvicorn, local Triton, room server, simulated robot.

A session is created from the form, turns ``running`` with the robot, is stopped and
deleted from its buttons; an API error shows its ``detail`` and keeps the form; a lost
server shows as lost, with the last known sessions still on screen."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr

from orchestrator.triton.launcher import LocalTriton
from tests.e2e.conftest import e2e_settings
from tests.e2e.test_sessions import robot_for
from tests.support.arena import ArenaServerProcess
from tests.support.browser import chromium
from tests.support.orchestrator import Orchestrator, run_orchestrator, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
TIMEOUT_MS = 30_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def open_console(browser: Browser, url: str) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    await expect(page.locator("#conn")).to_have_text("connected")
    assert not errors, errors  # no script error on load
    return page


def row(page: Page, session_id: str) -> Any:
    return page.locator(f'#sessions tbody tr[data-session="{session_id}"]')


async def has_ink(page: Page, canvas_id: str) -> bool:
    """Coloured (not grey/white) pixels on a canvas: the plot drew its lines."""
    ink: int = await page.evaluate(
        """id => {
            const c = document.getElementById(id);
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) {
                const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
                if (d[i + 3] > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 60) n++;
            }
            return n;
        }""",
        canvas_id,
    )
    return ink > 50


def save_screenshot(png: bytes, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(png)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / name)
    return path


async def test_console_creates_runs_stops_and_deletes_a_session(
    browser: Browser, orchestrator: Orchestrator, arena: ArenaServerProcess, tmp_path: Path
) -> None:
    sid = f"console-{uuid.uuid4().hex[:6]}"
    page = await open_console(browser, f"{orchestrator.base_url}/console")
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.reload()  # from the first byte, with every request seen
    await expect(page.locator("#conn")).to_have_text("connected")

    # The model list comes from Triton; the cameras from the chosen model's metadata.
    await expect(page.locator("#f-model option[value=tiny_act]")).to_have_count(1)
    await page.select_option("#f-model", "tiny_act")
    await expect(page.locator("#f-cameras")).to_have_value("front")

    await page.fill("#f-session", sid)
    await page.fill("#f-arena", arena.base_url)
    await page.click("#f-submit")
    await expect(row(page, sid)).to_have_attribute("data-status", "ready")
    assert (await orchestrator.status(sid))["status"] == "ready"

    status = await orchestrator.status(sid)
    async with robot_for(status["rooms"], arena) as robot:
        await row(page, sid).locator("button[data-action=start]").click()
        await expect(row(page, sid)).to_have_attribute("data-status", "running")
        await wait_for(lambda: len(robot.received) >= 30, 30, "30 commands at the robot")
        # The detail plots: commands per joint and inference latency, drawn from the API.
        await row(page, sid).locator("td").first.click()
        await expect(page.locator("#detail")).to_be_visible()
        await expect(page.locator("#detail-id")).to_have_text(sid)
        await wait_for(lambda: has_ink(page, "plot-commands"), 20, "command plot lines")
        await wait_for(lambda: has_ink(page, "plot-latency"), 20, "latency plot lines")
        await expect(page.locator("#triton")).to_have_text("Triton: ready")
        # A few seconds of history in the plots for the screenshot (the README shows it).
        await wait_for(lambda: len(robot.received) >= 150, 30, "150 commands at the robot")
        cells = await row(page, sid).locator("td").all_inner_texts()
        assert cells[1] == "running" and cells[2] == "tiny_act", cells
        assert "Hz" in cells[3] and cells[4].endswith("ms") and "ms /" in cells[5], cells
        assert cells[6].endswith("s)"), cells  # plan horizon, ticks and seconds
        shot = save_screenshot(await page.screenshot(full_page=True), tmp_path, "console.png")
        assert shot.stat().st_size > 10_000

        await row(page, sid).locator("button[data-action=stop]").click()
        await expect(row(page, sid)).to_have_attribute("data-status", "stopped")
        assert (await orchestrator.status(sid))["status"] == "stopped"
        # Restart works from any state; the robot gets commands again.
        count = len(robot.received)
        await row(page, sid).locator("button[data-action=restart]").click()
        await expect(row(page, sid)).to_have_attribute("data-status", "running")
        await wait_for(lambda: len(robot.received) >= count + 15, 30, "commands after restart")
        await row(page, sid).locator("button[data-action=stop]").click()
        await expect(row(page, sid)).to_have_attribute("data-status", "stopped")

    delete = row(page, sid).locator("button[data-action=delete]")
    await delete.click()
    await expect(delete).to_have_text("confirm delete")  # a second click deletes
    await delete.click()
    await expect(row(page, sid)).to_have_count(0)
    assert (await orchestrator.http.get(f"/sessions/{sid}")).status_code == 404
    await expect(page.locator("#empty")).to_be_visible()
    await expect(page.locator("#error")).to_be_hidden()
    # Offline: the page loaded nothing from anywhere but the orchestrator.
    assert requested and all(u.startswith(orchestrator.base_url + "/") for u in requested), {
        u for u in requested if not u.startswith(orchestrator.base_url)}


async def test_console_shows_the_api_error_detail_and_keeps_the_form(
    browser: Browser, orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    sid = f"console-dup-{uuid.uuid4().hex[:6]}"
    body = {"session_id": sid, "policy_path": "tiny_act", "camera_names": ["front"],
            "arena_server_url": arena.base_url}
    await orchestrator.create_session(**body)
    page = await open_console(browser, f"{orchestrator.base_url}/console")
    await expect(page.locator("#f-model option[value=tiny_act]")).to_have_count(1)
    await page.fill("#f-session", sid)  # taken: the API refuses it
    await page.fill("#f-cameras", "front")
    await page.fill("#f-arena", arena.base_url)
    await page.fill("#f-rate", "25")
    await page.click("#f-submit")

    # The same request straight to the API: the page shows exactly its detail.
    response = await orchestrator.http.post("/sessions", json=body)
    assert response.status_code == 409, response.text
    await expect(page.locator("#error-text")).to_have_text(response.json()["detail"])
    await expect(page.locator("#f-session")).to_have_value(sid)
    await expect(page.locator("#f-cameras")).to_have_value("front")
    await expect(page.locator("#f-arena")).to_have_value(arena.base_url)
    await expect(page.locator("#f-rate")).to_have_value("25")
    await expect(row(page, sid)).to_have_count(1)  # the existing session, unchanged
    assert (await orchestrator.status(sid))["status"] == "ready"
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_console_shows_a_lost_server_as_lost_not_as_no_sessions(
    browser: Browser, e2e_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    sid = f"console-lost-{uuid.uuid4().hex[:6]}"
    async with run_orchestrator(e2e_settings(e2e_triton)) as orch:
        await orch.create_session(session_id=sid, policy_path="tiny_act",
                                  camera_names=["front"], arena_server_url=arena.base_url)
        page = await open_console(browser, f"{orch.base_url}/console")
        await expect(row(page, sid)).to_have_attribute("data-status", "ready")
    # The server is gone: the page says so and keeps the last known session on screen.
    await expect(page.locator("#conn")).to_contain_text("server unreachable")
    await expect(page.locator("#sessions")).to_have_class("stale")
    await expect(row(page, sid)).to_have_count(1)
    await expect(page.locator("#empty")).to_be_hidden()


async def test_console_under_api_works_with_an_api_key_kept_in_the_page(
    browser: Browser, e2e_triton: LocalTriton
) -> None:
    key = "console-" + uuid.uuid4().hex
    settings = e2e_settings(e2e_triton, api_key=SecretStr(key))
    async with run_orchestrator(settings) as orch:
        page = await browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        await page.goto(f"{orch.base_url}/api/console")  # the page itself needs no key
        await expect(page.locator("#conn")).to_contain_text("API key needed")
        await expect(page.locator("#error-text")).to_contain_text("authentication required")
        await page.fill("#api-key", key)
        await page.locator("#api-key").dispatch_event("change")
        await expect(page.locator("#conn")).to_have_text("connected")
        await expect(page.locator("#f-model option[value=tiny_act]")).to_have_count(1)
        await expect(page.locator("#error")).to_be_hidden()
        # Served under /api, the page calls the API under /api.
        calls = {url.removeprefix(orch.base_url).split("?")[0] for url in requested}
        assert {"/api/sessions", "/api/models", "/api/health"} <= calls, calls
        assert all(c.startswith("/api/") for c in calls), calls
