"""uvicorn's HTTP protocol (the httptools parser) with the connection limits uvicorn lacks.

- **header timeout**: a request's line and headers must all arrive within ``header_timeout`` seconds
  of its first byte (or of the connection opening); otherwise the connection is closed.
- **header size**: the request line and headers together may hold at most ``max_header_bytes``
  bytes, counted as they arrive, before the parser buffers more; otherwise a 431 and the connection
  is closed. (uvicorn's ``h11_max_incomplete_event_size`` applies only to its h11 parser, and
  httptools has no limit at all: 32 MiB of headers used to be answered 200.) Exact to the byte for a
  request's first read; the headers of a pipelined request that arrive in the same read as the end of
  the previous one are not counted, at most one read (256 KiB) more.
- **body timeout**: a request's body must all arrive within ``body_timeout`` seconds of its headers;
  otherwise a 408 (when no answer has started) and the connection is closed. Without it a client
  sending one byte every few seconds held a connection, and its file descriptor, for ever.
- a body still arriving after the answer went out (a 401, 404 or 413 answered before reading it) is
  read and dropped up to ``DRAIN_BYTES``, then the connection is closed.

A refusal is answered, the sending side shut, and the unread rest of the request read and dropped
for up to ``LINGER_SECONDS`` (at most ``LINGER_BYTES``) before closing: closing a socket with unread
bytes makes the kernel send a reset, which can reach the client before the answer does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncio import BaseTransport, TimerHandle

from automl.exceptions import ConfigError

DRAIN_BYTES = 64 * 1024 * 1024  # body bytes read and dropped after an early answer before closing
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
REFUSED_SCOPE_KEY = "automl.refused"  # set in the request's ASGI scope when the protocol answered for the app
REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may cost the server: seconds for headers and for a body, header bytes."""

    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    body_timeout: float = 60.0


def limited_protocol(limits: ConnectionLimits,
                     on_refused: Callable[[int, str], None] | None = None) -> type:
    """uvicorn's httptools protocol class enforcing ``limits``; ``on_refused(status, code)`` is called
    for each 431 (answers the app never sees, so the app's metrics can count them)."""
    from automl.serve.http import error_body

    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        raise ConfigError("automl serve needs the httptools HTTP parser: pip install 'uvicorn[standard]'") from None

    class LimitedHttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self._reading_headers = True  # between two requests, or inside one's request line and headers
            self._begun = False  # the parser has seen the first byte of the current request
            self._header_bytes = 0  # bytes of the current request's line and headers so far
            self._drained = 0  # body bytes dropped after the answer went out
            self._header_timer: TimerHandle | None = None
            self._body_timer: TimerHandle | None = None
            self._lingering = False
            self._lingered = 0

        # --- asyncio.Protocol ------------------------------------------------------------------
        def connection_made(self, transport: BaseTransport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()  # a client that connects and sends nothing

        def connection_lost(self, exc: Exception | None) -> None:
            self._header_timer = _cancel(self._header_timer)
            self._body_timer = _cancel(self._body_timer)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._lingering:  # answered and refused: drop what is still coming, within bounds
                self._lingered += len(data)
                if self._lingered > LINGER_BYTES:
                    self.transport.close()
                return
            cycle = self.cycle
            if not self._reading_headers and cycle is not None and cycle.response_complete:
                self._drained += len(data)  # the rest of a body nobody reads (uvicorn drops it)
                if self._drained > DRAIN_BYTES:
                    self.transport.close()
                    return
            if self._reading_headers:
                room = limits.max_header_bytes - self._header_bytes
                if len(data) > room:  # feed up to the limit; refuse when the headers are still not complete
                    head, data = data[:room], data[room:]
                    self._header_bytes += len(head)
                    super().data_received(head)
                    if self.transport.is_closing():
                        return
                    if self._reading_headers:
                        self._refuse(431, "headers_too_large",
                                     f"the request line and headers are over the limit of {limits.max_header_bytes} "
                                     "bytes")
                        return
                else:
                    self._header_bytes += len(data)
            super().data_received(data)
            if self.transport.is_closing():
                return
            if self._reading_headers:
                if self._begun:
                    self._arm_header_timer()
            elif self._body_timer is None:
                self._body_timer = self.loop.call_later(limits.body_timeout, self._body_too_slow)

        # --- httptools parser callbacks ----------------------------------------------------------
        def on_message_begin(self) -> None:
            self._begun = True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._reading_headers = False
            self._header_timer = _cancel(self._header_timer)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._reading_headers, self._begun, self._header_bytes, self._drained = True, False, 0, 0
            self._body_timer = _cancel(self._body_timer)
            super().on_message_complete()

        # --- limits ------------------------------------------------------------------------------
        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(limits.header_timeout, self._headers_too_slow)

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and not self._lingering:
                self.transport.close()

        def _body_too_slow(self) -> None:
            self._body_timer = None
            if self.transport.is_closing() or self._lingering:
                return
            cycle = self.cycle
            if cycle is None or cycle.response_started:
                self.transport.close()
                return
            # Answer for the app, then wake it: its receive() returns a disconnect and what it sends
            # afterwards goes nowhere; the scope key lets it count a 408 rather than a client that left.
            cycle.scope[REFUSED_SCOPE_KEY] = 408
            self._refuse(408, "body_timeout",
                         f"the request body did not arrive within {limits.body_timeout:g} s of its headers")
            cycle.disconnected = True
            cycle.message_event.set()

        def _refuse(self, status: int, code: str, detail: str) -> None:
            body = error_body(code, detail)
            head = (f"HTTP/1.1 {status} {REASONS[status]}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
            self.transport.write(head + body)
            self._header_timer = _cancel(self._header_timer)
            self._body_timer = _cancel(self._body_timer)
            self._lingering = True
            if status == 431 and on_refused is not None:
                on_refused(status, code)
            try:
                self.transport.write_eof()  # FIN once the answer is out: the client reads it, then the end
            except (NotImplementedError, RuntimeError, OSError):
                self.transport.close()
                return
            self.flow.resume_reading()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)

    return LimitedHttpProtocol


def _cancel(timer: TimerHandle | None) -> None:
    """Cancel a loop timer (or nothing); returns None to clear the attribute that held it."""
    if timer is not None:
        timer.cancel()
