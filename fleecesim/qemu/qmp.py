"""A small, dependency-free QMP client over a unix socket.

QMP is newline-delimited JSON. After connecting, the server sends a greeting;
the client must run ``qmp_capabilities`` before anything else. Replies carry the
``id`` the request had; asynchronous events carry ``event``, ``data`` and a
``timestamp`` of ``{"seconds": S, "microseconds": US}`` (host wall clock).

A background thread reads every message, so events are collected while the
caller waits for something else, and every wait is bounded by a timeout.
"""
from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from typing import Any, Callable


class QMPError(RuntimeError):
    """QEMU answered a command with an error, or the connection broke."""


class QMPTimeout(QMPError):
    """No reply or event within the timeout."""


def event_time(ev: dict) -> float:
    """Seconds since the epoch of a QMP event's ``timestamp``."""
    ts = ev["timestamp"]
    return ts["seconds"] + ts["microseconds"] / 1e6


class QMPClient:
    def __init__(self, path: str, connect_timeout: float = 10.0,
                 alive: Callable[[], bool] | None = None):
        """Connect to the QMP unix socket at ``path`` (retrying while the daemon
        starts, for at most ``connect_timeout`` s; ``alive()`` returning False
        aborts early) and negotiate capabilities."""
        self.path = path
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._replies: dict[str, dict] = {}
        self._events: list[dict] = []
        self._closed = False
        self._close_reason = ""
        deadline = time.monotonic() + connect_timeout
        last: Exception | None = None
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except OSError as e:
                s.close()
                last = e
            if alive is not None and not alive():
                raise QMPError(f"QMP {path}: the daemon exited before its monitor came up")
            if time.monotonic() > deadline:
                raise QMPTimeout(f"QMP {path}: could not connect within {connect_timeout}s ({last})")
            time.sleep(0.02)
        self._sock = s
        self._rfile = s.makefile("rb")
        self._greeting: dict | None = None
        self._thread = threading.Thread(target=self._reader, name=f"qmp-{path}", daemon=True)
        self._thread.start()
        with self._cond:
            ok = self._cond.wait_for(lambda: self._greeting is not None or self._closed,
                                     timeout=max(1.0, deadline - time.monotonic()))
        if not ok or self._greeting is None:
            self.close()
            raise QMPTimeout(f"QMP {path}: no greeting")
        self.execute("qmp_capabilities")

    @property
    def greeting(self) -> dict:
        return self._greeting or {}

    def _reader(self) -> None:
        try:
            for line in self._rfile:
                line = line.strip()
                if not line:
                    continue
                msg = json.loads(line)
                with self._cond:
                    if "QMP" in msg and self._greeting is None:
                        self._greeting = msg
                    elif "event" in msg:
                        self._events.append(msg)
                    elif "id" in msg:
                        self._replies[str(msg["id"])] = msg
                    self._cond.notify_all()
            reason = "connection closed by QEMU"
        except (OSError, ValueError) as e:
            reason = f"connection error: {e}"
        with self._cond:
            self._closed = True
            self._close_reason = reason
            self._cond.notify_all()

    def execute(self, cmd: str, args: dict | None = None, timeout: float = 30.0) -> Any:
        """Run ``cmd`` and return its ``return`` value; QMPError on an error reply."""
        rid = f"fs-{next(self._ids)}"
        msg: dict[str, Any] = {"execute": cmd, "id": rid}
        if args:
            msg["arguments"] = args
        data = (json.dumps(msg) + "\n").encode()
        with self._cond:
            if self._closed:
                raise QMPError(f"QMP {cmd}: {self._close_reason}")
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise QMPError(f"QMP {cmd}: send failed: {e}") from e
        with self._cond:
            ok = self._cond.wait_for(lambda: rid in self._replies or self._closed, timeout=timeout)
            if rid in self._replies:
                reply = self._replies.pop(rid)
            elif not ok:
                raise QMPTimeout(f"QMP {cmd}: no reply within {timeout}s")
            else:
                raise QMPError(f"QMP {cmd}: {self._close_reason}")
        if "error" in reply:
            err = reply["error"]
            raise QMPError(f"QMP {cmd} failed: {err.get('class')}: {err.get('desc')}")
        return reply.get("return")

    def events(self, name: str | None = None) -> list[dict]:
        """All events received so far (optionally only those called ``name``)."""
        with self._cond:
            return [e for e in self._events if name is None or e["event"] == name]

    def wait_event(self, name: str, pred: Callable[[dict], bool] | None = None,
                   timeout: float = 30.0) -> dict:
        """First event ``name`` (matching ``pred`` on its data) received so far or
        within ``timeout`` s."""
        def find():
            for e in self._events:
                if e["event"] == name and (pred is None or pred(e.get("data", {}))):
                    return e
            return None

        with self._cond:
            found: list[dict | None] = [None]

            def ready():
                found[0] = find()
                return found[0] is not None or self._closed

            self._cond.wait_for(ready, timeout=timeout)
            if found[0] is not None:
                return found[0]
            if self._closed:
                raise QMPError(f"QMP: waiting for {name}: {self._close_reason}")
            raise QMPTimeout(f"QMP: no {name} event within {timeout}s")

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def __enter__(self) -> "QMPClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
