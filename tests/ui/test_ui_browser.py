"""A real browser (headless Debian chromium + playwright-core) talks to the chat.

Needs ``chromium`` (``apt-get install -y chromium``), ``node`` and ``npm ci`` in ``tests/ui/browser``;
skips with the reason otherwise. The screenshot goes to ``$CRWALKER_BROWSER_SCREENSHOT`` when set
(the release writes ``results/browser_chat.png`` from the real-engine test), else to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import free_port, make_fake_app

from ui.app import launch

HARNESS = Path(__file__).parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

pytestmark = pytest.mark.integration


def _require_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    if shutil.which("node") is None:
        pytest.skip("node not installed")
    if not (HARNESS / "node_modules" / "playwright-core").is_dir():
        pytest.skip(f"playwright-core missing: run `npm ci` in {HARNESS}")


def run_browser(url: str, out: Path, message: str, timeout_s: int = 240, guided: bool = False) -> dict:
    """Run the node harness; returns its JSON observations (fails the test on a non-zero exit).

    ``guided``: afterwards turn guided mode on in a new conversation, wait for the question, click Yes.
    """
    cmd = ["node", str(HARNESS / "chat_test.mjs"), "--url", url, "--out", str(out), "--message", message,
           "--chromium", CHROMIUM, "--timeout", str(timeout_s * 1000), "--guided", "1" if guided else "0"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 60)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from the browser harness:\n{proc.stdout}\n{proc.stderr}"
    res = json.loads(lines[-1])
    assert proc.returncode == 0, json.dumps(res)
    return res


def test_browser_chat_fake_engine(tmp_path):
    _require_browser()
    app = make_fake_app(tmp_path / "chat.sqlite3")
    app.engine.token_delay = 0.15  # slow enough that the browser sees the reply grow, even on a busy machine
    demo, url = launch(app, "127.0.0.1", free_port(), None, 2, block=False, quiet=True)
    try:
        res = run_browser(url, tmp_path / "fake.png", "I like Horror movies", guided=True)
    finally:
        demo.close()
    assert res["streamed"] and res["movie_cards"] == 3 and res["tree_nodes"] >= 4
    assert not res["xss_executed"] and res["xss_injected_img"] == 0
    assert (tmp_path / "fake.png").stat().st_size > 10_000
    # guided mode: the fake policy asks about Action; Yes -> it recommends the three Action movies
    assert res["guided_ok"] and "Action" in res["guided_question"] and "Action" in res["guided_reply"]
    assert res["after_yes_cards"] == 3 and res["after_yes_question"].startswith("FAKE recommends")
    assert (tmp_path / "fake-guided.png").stat().st_size > 10_000
    assert len(app.store.conversation_ids()) == 2


def test_browser_chat_real_engine(real_server, tmp_path):
    _require_browser()
    url, app = real_server
    out = Path(os.environ.get("CRWALKER_BROWSER_SCREENSHOT", tmp_path / "browser_chat.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    guided = getattr(app.engine, "guide", None) is not None  # the release bundle carries the SCPR guide
    res = run_browser(
        url, out, "I love scary movies like Alien and The Thing, what else should I watch?", guided=guided
    )
    print(json.dumps(res))
    assert res["reply"] and res["tree_nodes"] >= 1 and res["movie_cards"] >= 1
    assert not res["xss_executed"] and res["xss_injected_img"] == 0
    assert out.stat().st_size > 10_000
    if guided:  # the trained policy asked about an attribute (named in the reply), Yes got the next reply
        assert res["guided_ok"] and res["guided_act"].startswith("[ Query (")
        assert res["after_yes_reply"] and res["after_yes_act"].startswith("[")
