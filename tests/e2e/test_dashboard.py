"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): log in, see
the deployment list, open a deployment, watch its charts render with data, save a
screenshot under test-artifacts/."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import REPO, RunningPlatform, running_platform
from tests.e2e.sysdeps import CHROMIUM_FLAGS, require_binary, require_playwright

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts"
FAST = {"LEPTONIC_METRICS_INTERVAL": "0.5s"}


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    with running_platform(tmp_path / "data", FAST) as p:
        yield p


async def _traffic(p: RunningPlatform, seconds: float) -> None:
    """Bounded load spread over ``seconds`` so several samples see requests."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        res = await p.load("echo", "echo", 40, concurrency=4)
        assert res.failed == []
        await asyncio.sleep(0.2)


def test_login_open_deployment_chart_renders(platform: RunningPlatform) -> None:
    chromium = require_binary("chromium")
    sync_playwright = require_playwright()
    p = platform
    p.cli("deployment", "create", "--name", "echo", "--photon", "builtin:echo",
          "--replicas", "2")
    asyncio.run(_traffic(p, 3.0))
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(20_000)
            page.goto(p.url + "/")
            assert "/login" in page.url, "the dashboard needs a login"

            page.fill("input[name=token]", "lep_not-a-real-token")
            page.click("button[type=submit]")
            assert "not valid" in page.inner_text(".error")

            page.fill("input[name=token]", p.token)
            page.click("button[type=submit]")
            page.wait_for_url(p.url + "/")
            cookie = next(c for c in page.context.cookies() if c["name"] == "leptonic_session")
            assert cookie["httpOnly"]
            assert cookie["sameSite"] == "Strict"
            assert cookie["value"] != p.token, "the cookie holds a session, not the API token"
            row = page.locator("tr[data-deployment=echo]")
            row.wait_for()
            assert "2/2" in row.inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard-deployments.png"))

            page.click("a[href='/ui/deployments/echo']")
            page.wait_for_url("**/ui/deployments/echo")
            page.wait_for_function(
                "() => ['chart-requests', 'chart-latency', 'chart-replicas', 'chart-power']"
                ".every(id => {"
                "  const el = document.getElementById(id);"
                "  return el && el.querySelector('canvas') && Number(el.dataset.points) > 2; })")
            # the chart draws real samples: the series it fetched has traffic in it
            series = page.request.get(p.url + "/ui/data/deployments/echo/series?since=15m")
            assert series.ok
            data = series.json()
            assert max(v or 0 for v in data["values"]["requests_per_s"]) > 0
            assert max(v or 0 for v in data["values"]["replicas_ready"]) == 2
            assert "power_watts" in data["values"]      # its share of its node's power
            page.locator("#replicas td", has_text="ready").first.wait_for()
            page.locator("#events li", has_text="ReplicaStarted").first.wait_for()
            page.locator("#logs pre").wait_for()
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "dashboard-deployment.png"), full_page=True)

            page.click("a[href='/ui/nodes']")
            page.locator("td", has_text="local").first.wait_for()
            page.click("a[href='/ui/alerts']")
            page.locator("h1", has_text="Alerts").wait_for()

            page.click("text=Log out")
            page.wait_for_url("**/login")
            after = page.request.get(p.url + "/ui/data/deployments/echo/series")
            assert after.status == 401, "logging out revokes the session"
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard-deployment.png").stat().st_size > 10_000
