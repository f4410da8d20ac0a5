"""Headless Chromium driven over the DevTools protocol on a pipe, with the Network domain never enabled.

Playwright enables the Network domain, and Chromium then copies every request body into a DevTools
event: an upload of 190 MB (a 253 MB base64 callback body) crashes Playwright's driver ("Cannot create
a string longer than 0x1fffffe8 characters") before the page or the app is involved. Uploads near the
app's 200 MB limit are therefore driven with this small client: the same Debian Chromium, the real
page, the real file chooser (``DOM.setFileInputFiles``), nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path


class PipeChromium:
    """A headless Chromium whose DevTools protocol runs over fds 3 (commands) and 4 (answers)."""

    def __init__(self, chromium: str, args: list[str]):
        r_cmd, w_cmd = os.pipe()
        r_out, w_out = os.pipe()

        def child() -> None:  # runs in the child between fork and exec
            os.dup2(r_cmd, 3)
            os.dup2(w_out, 4)

        self.proc = subprocess.Popen([chromium, *args, "--remote-debugging-pipe", "about:blank"],
                                     preexec_fn=child, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_cmd)
        os.close(w_out)
        self._w, self._r, self._buf, self._id = w_cmd, r_out, b"", 0

    def _message(self, timeout: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], max(timeout, 0.01))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:  # events (without an id) are dropped: nothing here waits for one
            m = self._message(deadline - time.monotonic())
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def new_tab(self, url: str) -> "Tab":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tab = Tab(self, session)
        tab.send("Page.navigate", {"url": url})
        return tab

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for fd in (self._w, self._r):
            os.close(fd)


class Tab:
    def __init__(self, browser: PipeChromium, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        """The first truthy value of ``expression``, polled every 0.2 s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"still false after {timeout:.0f} s: {expression}")

    def set_input_files(self, selector: str, paths: list[Path]) -> None:
        """What choosing ``paths`` in the file chooser of ``selector`` does."""
        root = self.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise RuntimeError(f"no element {selector}")
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(p) for p in paths]})
