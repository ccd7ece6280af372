"""A real browser for the tests that must see what a browser sees: Debian's headless Chromium, driven by
playwright-core, both installed by scripts/setup.sh (the browser by apt, the driver into .venv/node by npm: the
network has no browser builds to download).

The page the script runs in is a blank one that Playwright serves itself at the server's own origin, so that
moorage serves no HTML and every request the script makes is same-origin, as from a page moorage would serve:
no CORS, and the browser's own rules for what it may send (EventSource and WebSocket send no custom header).

moorage takes a credential from a header only (src/moorage/web/middlewares.py: a key in the query string is a
400 and no cookie is read), so a page's EventSource has none to give. `headers` stands for the proxy in front of
moorage that adds one (src/moorage/api/session.py says the same of the WebSocket): the browser sends them on
every request of the page, EventSource's and its reconnections included.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from .helpers import ROOT

CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = ROOT / ".venv" / "node" / "node_modules" / "playwright-core"
# Where the blank page is served (by Playwright, before moorage could answer): a path no route of moorage has.
PAGE_PATH = "/__browser__"
# What node, a launch and a close take besides the script (2.5 s here, 6 s with the other core busy): the
# script's own limit is the page's, this is only the backstop for a node or a Chromium that hangs. That cost is
# also why a test does its browser checks in one script rather than one page each.
_LAUNCH_GRACE = 30.0

# The driver, run by node with the request on its stdin. It prints one JSON line on stdout, {"value": ...} or
# {"error": ...}, and the page's console on stderr; the route serves the blank page and is removed at once, so
# that the script's own requests reach the server untouched (an intercepted stream would pass through the driver).
_DRIVER = r"""
const { chromium } = require(process.argv[1]);
const chunks = [];
process.stdin.on("data", (chunk) => chunks.push(chunk));
process.stdin.on("end", async () => {
  const { executable, origin, path, script, arg, headers, timeLimit } = JSON.parse(Buffer.concat(chunks));
  const lines = [];
  let browser;
  let out;
  try {
    browser = await chromium.launch({ executablePath: executable, args: ["--no-sandbox"], timeout: 30000 });
    const context = await browser.newContext({ extraHTTPHeaders: headers });
    const page = await context.newPage();
    page.on("console", (msg) => lines.push(`console.${msg.type()}: ${msg.text()}`));
    page.on("pageerror", (err) => lines.push(`pageerror: ${err.message}`));
    await page.route(origin + path, (route) =>
      route.fulfill({ contentType: "text/html", body: "<!doctype html><title>moorage test page</title>" }),
    );
    await page.goto(origin + path);
    await page.unrouteAll();
    let timer;
    const late = new Promise((_, reject) => {
      const message = `the page's script did not finish within ${timeLimit} s`;
      timer = setTimeout(() => reject(new Error(message)), timeLimit * 1000);
    });
    try {
      const value = await Promise.race([page.evaluate(`(${script})(${JSON.stringify(arg)})`), late]);
      out = { value: value === undefined ? null : value };
    } finally {
      clearTimeout(timer);
    }
  } catch (err) {
    out = { error: String(err && err.stack ? err.stack : err) };
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  for (const line of lines) process.stderr.write(line + "\n");
  process.stdout.write(JSON.stringify(out) + "\n");
});
"""


class PageError(AssertionError):
    """The page's script threw, or did not finish in time: an assertion failure of the test, with the message
    and the page's console, which a test may also expect (`pytest.raises(PageError)`)."""


def _missing_tooling() -> str | None:
    found = {
        "node": shutil.which("node") is not None,
        "Chromium": CHROMIUM.exists(),
        "playwright-core": PLAYWRIGHT.is_dir(),
    }
    return next((what for what, there in found.items() if not there), None)


async def _end(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM first: Playwright closes its Chromium on it, where a killed node leaves that to the pipe's end."""
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def run_in_page(
    origin: str,
    script: str,
    *,
    arg: Any = None,
    headers: Mapping[str, str] | None = None,
    time_limit: float = 10.0,
) -> Any:
    """Run `script`, the source of a JavaScript function (`async (arg) => ...`), in a page of `origin` (scheme,
    host and port, as `str(client.make_url(""))` or `Daemon.url` give it) and return what it returns, through
    JSON. Async, and never blocking the loop: the server under test is most often an aiohttp test server on
    this same loop, which must go on answering the browser. The tools missing fail the test, as every engine
    test fails without what scripts/setup.sh installs; a script that throws or outlives `time_limit` raises
    PageError."""
    if (missing := _missing_tooling()) is not None:
        pytest.fail(f"{missing} is missing for the browser tests: `bash scripts/setup.sh engine` installs it")
    request = {
        "executable": str(CHROMIUM),
        "origin": origin.rstrip("/"),
        "path": PAGE_PATH,
        "script": script,
        "arg": arg,
        "headers": dict(headers or {}),
        "timeLimit": time_limit,
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        "-e",
        _DRIVER,
        str(PLAYWRIGHT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(
            proc.communicate(json.dumps(request).encode()), time_limit + _LAUNCH_GRACE
        )
    except TimeoutError:
        raise PageError(f"node and Chromium did not finish within {time_limit + _LAUNCH_GRACE} s") from None
    finally:
        if proc.returncode is None:  # timed out, or the test was cancelled (pytest-timeout): no browser outlives it
            await _end(proc)
    console = stderr.decode(errors="replace").strip()
    try:
        out = json.loads(stdout.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise PageError(f"the browser driver exited with {proc.returncode} and no answer:\n{console}") from None
    if "error" in out:
        raise PageError(f"{out['error']}\n{console}".strip())
    return out["value"]
