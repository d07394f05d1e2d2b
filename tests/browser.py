"""Headless Chromium driven over the DevTools protocol on a pipe (standard library only).

Debian's ``chromium`` (``make chromium`` installs it) is started with
``--remote-debugging-pipe``: it reads commands as NUL-terminated JSON on fd 3 and writes
answers and events on fd 4. ``open_page`` loads a page at a given viewport width and
``check_page`` returns what a reader would notice: images that did not load, console errors,
requests that left the page, horizontal overflow, plus a PNG screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-pipe")

# Run in the page once it has loaded: wait until every image decoded (or failed), then measure.
PAGE_CHECK = """(async () => {
  const images = [...document.images];
  await Promise.all(images.map(image => image.decode().catch(() => null)));
  const width = window.innerWidth;
  return {
    viewport_width: width,
    scroll_width: document.documentElement.scrollWidth,
    images: images.map(image => ({alt: image.alt, complete: image.complete,
                                  natural_width: image.naturalWidth,
                                  right: image.getBoundingClientRect().right})),
    links: [...document.querySelectorAll('a[href]')].map(link => ({
      text: link.textContent, href: link.getAttribute('href'), resolved: link.href})),
    wider_than_viewport: [...document.body.querySelectorAll('*')]
      .filter(element => element.getBoundingClientRect().right > width + 0.5
                         && !element.closest('.scroll'))
      .map(element => element.tagName + (element.className ? '.' + element.className : '')),
    text: document.body.innerText,
  };
})()"""


def find_chromium() -> str | None:
    """The chromium binary: env CHROMIUM, else chromium / chromium-browser on PATH."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _high_fd(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered 10 or above (so fds 3 and 4 can be set freely)."""
    duplicate = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return duplicate


class BrowserError(RuntimeError):
    """Chromium did not start, answered an error, or did not answer in time."""


class HeadlessChromium:
    """One headless Chromium process; ``with HeadlessChromium() as browser: ...``."""

    def __init__(self, binary: str | None = None, timeout: float = 60.0) -> None:
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError("chromium not found: run `make chromium` (apt-get install chromium) or set CHROMIUM")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="clearsight-chromium-")
        commands_read, commands_write = (_high_fd(fd) for fd in os.pipe())
        answers_read, answers_write = (_high_fd(fd) for fd in os.pipe())

        def child_fds():  # the child's fd 3 reads our commands, its fd 4 writes answers
            os.dup2(commands_read, 3)
            os.dup2(answers_write, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=child_fds)
        os.close(commands_read)
        os.close(answers_write)
        self._writer = os.fdopen(commands_write, "wb", buffering=0)
        self._reader = os.fdopen(answers_read, "rb", buffering=0)
        self._next_id = 0
        self._answers: dict[int, dict] = {}
        self.events: list[dict] = []
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read_loop, name="chromium-devtools", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            chunk = self._reader.read(65536)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._condition:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self.events.append(message)
                self._condition.notify_all()
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """One DevTools command; its result, or BrowserError for an error answer or a timeout."""
        with self._condition:
            self._next_id += 1
            command_id = self._next_id
        message = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._writer.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._condition:
            while command_id not in self._answers:
                if self._closed or not self._condition.wait(max(0.0, deadline - time.monotonic())):
                    if command_id in self._answers:
                        break
                    raise BrowserError(f"no answer to {method} within {self.timeout:g} s")
            answer = self._answers.pop(command_id)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def wait_for_event(self, method: str, session: str, since: int) -> dict:
        """The first event ``method`` of ``session`` at index ``since`` or later of ``events``."""
        deadline = time.monotonic() + self.timeout
        with self._condition:
            while True:
                for event in self.events[since:]:
                    if event.get("method") == method and event.get("sessionId") == session:
                        return event
                if self._closed or not self._condition.wait(max(0.0, deadline - time.monotonic())):
                    raise BrowserError(f"no {method} event within {self.timeout:g} s")

    def open_page(self, url: str, width: int, height: int = 900, mobile: bool = False) -> str:
        """Load ``url`` in a new tab of ``width`` x ``height`` CSS pixels; returns its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}, session=session)
        since = len(self.events)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for_event("Page.loadEventFired", session, since)
        return session

    def check_page(self, session: str) -> dict:
        """PAGE_CHECK's measurements, plus ``errors`` (console errors, exceptions, failed loads),
        ``requests`` (every URL the page asked for) and ``screenshot`` (PNG bytes)."""
        answer = self.send("Runtime.evaluate", {"expression": PAGE_CHECK, "awaitPromise": True,
                                                "returnByValue": True}, session=session)
        if "exceptionDetails" in answer:
            raise BrowserError(f"page check failed: {answer['exceptionDetails']}")
        result = answer["result"]["value"]
        screenshot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        with self._condition:
            events = [event for event in self.events if event.get("sessionId") == session]
        errors = []
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text", "") + " " + params["entry"].get("url", ""))
            elif method == "Network.loadingFailed":
                errors.append(f"loading failed: {params.get('errorText')}")
        result["errors"] = errors
        result["requests"] = [event["params"]["request"]["url"] for event in events
                              if event.get("method") == "Network.requestWillBeSent"]
        result["screenshot"] = base64.b64decode(screenshot)
        return result

    def close(self) -> None:
        """Ask Chromium to quit, kill it if it does not within 10 s, remove the profile folder."""
        if self.process.poll() is None:
            try:
                self._writer.write(json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            except OSError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._writer.close()
        self._thread.join(timeout=5)
        self._reader.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> HeadlessChromium:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def page_url(path: Path) -> str:
    """A file's file:// URL (percent-encoded)."""
    return Path(path).resolve().as_uri()
