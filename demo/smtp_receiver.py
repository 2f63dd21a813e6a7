"""A stand-in mail server for the demo and the tests: a real SMTP server (aiosmtpd) on 127.0.0.1
that keeps every message, and counts copies it has already seen by Message-ID (our alerts derive
it from the alert id, so a resent alert is a duplicate here, counted rather than assumed).

    python -m demo.smtp_receiver          (env: SMTP_RECEIVER_HOST=127.0.0.1, SMTP_RECEIVER_PORT=2525)

For fault tests, ``hold()`` makes the server keep each message but not answer until
``release()``: the sender has delivered, yet has not heard so.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Mailbox:
    """What the server has received; safe to read from another thread."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    duplicates: int = 0
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _holding: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)
    received_while_holding: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self._lock:
            message_id = str(msg.get("Message-ID", "")).strip()
            if message_id and message_id in self._seen:
                self.duplicates += 1
            self._seen.add(message_id)
            self.messages.append(msg)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self._holding.is_set():
            self.received_while_holding.set()
            await asyncio.to_thread(self._released.wait)
        return "250 Message accepted for delivery"

    def hold(self) -> None:
        """Keep the next messages but do not answer until ``release()``."""
        self._released.clear()
        self.received_while_holding.clear()
        self._holding.set()

    def release(self) -> None:
        self._holding.clear()
        self._released.set()

    def snapshot(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)

    def unique(self) -> int:
        with self._lock:
            return len(self._seen)

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m, (_f, rcpt) in zip(self.messages, self.envelopes, strict=True) if address in rcpt]


class SmtpReceiver:
    """An aiosmtpd Controller on 127.0.0.1:``port`` with a ``Mailbox``; a context manager."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.mailbox = Mailbox()
        self._controller = Controller(self.mailbox, hostname=host, port=port, ready_timeout=10)

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self.mailbox.release()
        self._controller.stop()

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main() -> None:
    receiver = SmtpReceiver(
        int(os.environ.get("SMTP_RECEIVER_PORT", "2525")), os.environ.get("SMTP_RECEIVER_HOST", "127.0.0.1")
    ).start()
    print(f"SMTP stand-in on {receiver.host}:{receiver.port}; Ctrl-C stops", flush=True)
    shown = 0
    try:
        while True:
            time.sleep(0.5)
            for msg in receiver.mailbox.snapshot()[shown:]:
                print(f"{msg['Message-ID']} to {msg['To']}: {msg['Subject']}", flush=True)
                shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
