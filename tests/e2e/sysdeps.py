"""System programs some end-to-end tests need (Debian's chromium and prometheus, installed
by ``make sysdeps``). Missing ones skip the test locally, and fail it in CI
(``LEPTONIC_REQUIRE_SYSTEM_DEPS=1``, set by ``.ci/run``) so CI can never pass by skipping."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def _missing(what: str) -> None:
    message = f"{what} is not installed; `make sysdeps` installs it"
    if os.environ.get("LEPTONIC_REQUIRE_SYSTEM_DEPS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} (Debian package {name})")
    assert path is not None
    return path


def require_playwright() -> Any:
    """``playwright.sync_api.sync_playwright`` (the Python package drives Debian's chromium;
    no browser is downloaded)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package (pip install -e '.[dev]')")
    return sync_playwright


@contextlib.contextmanager
def dashboard_page(url: str, token: str, path: str) -> Iterator[Any]:
    """A headless Chromium page of the dashboard at ``path``, logged in with ``token``
    (the login form the dashboard redirects to first); the browser closes afterwards."""
    chromium = require_binary("chromium")
    sync_playwright = require_playwright()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(20_000)
            page.goto(url + path)
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_url("**" + path.split("?")[0] + "**")
            yield page
        finally:
            browser.close()
