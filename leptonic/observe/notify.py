"""Notification targets: parse and check them, hide their secrets, build and send messages.

Targets are ``webhook:URL`` (a JSON POST; the body has a ``text`` field, so a Slack
incoming-webhook URL works as it is), ``slack:URL`` (the same), and
``email:ADDR[,ADDR...]`` (sent through the SMTP server of the platform's settings).
Webhook URLs often carry a token in their path or query, so anything shown or logged goes
through :func:`redact` first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx

from leptonic.config.observe import SmtpSettings
from leptonic.errors import InvalidInput

KINDS = ("webhook", "slack", "email")
_EMAIL_RE = re.compile(r"^[^@\s,]+@[^@\s,]+$")
MAX_TARGETS = 10


class DeliveryError(Exception):
    """A notification could not be delivered this time (it will be retried)."""


def check_target(target: str) -> str:
    """Return ``target`` if it is a valid notification target, else raise InvalidInput."""
    kind, sep, rest = target.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise InvalidInput(f"invalid notification target {redact(target)!r}: write "
                           "webhook:URL, slack:URL or email:ADDRESS")
    if kind in ("webhook", "slack"):
        parts = urlsplit(rest)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"invalid {kind} URL {redact(target)!r}: it must be an "
                               "http:// or https:// URL")
    else:
        for addr in rest.split(","):
            if not _EMAIL_RE.match(addr.strip()):
                raise InvalidInput(f"invalid email address {addr.strip()!r} in {target!r}")
    return target


def check_targets(targets: list[str]) -> list[str]:
    if len(targets) > MAX_TARGETS:
        raise InvalidInput(f"an alert rule notifies at most {MAX_TARGETS} targets")
    return [check_target(t.strip()) for t in targets]


def redact(target: str) -> str:
    """A target safe to show: a URL keeps its scheme, host and port only."""
    kind, sep, rest = target.partition(":")
    if kind in ("webhook", "slack") and sep:
        try:
            parts = urlsplit(rest)
            host = parts.hostname or "?"
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return f"{kind}:…"
        tail = "/…" if (parts.path not in ("", "/") or parts.query) else ""
        return f"{kind}:{parts.scheme}://{host}{port}{tail}"
    return target


def _when(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def build_payload(*, rule: str, target: str, status: str, expr: str, severity: str,
                  value: float | None, started_at: float | None, resolved_at: float | None,
                  description: str, dashboard_url: str | None) -> dict[str, Any]:
    """The JSON body of a notification (Slack-compatible: ``text`` is the message)."""
    icon = ":rotating_light:" if status == "firing" else ":white_check_mark:"
    shown = "no data" if value is None else f"{value:.4g}"
    text = (f"{icon} [{status.upper()}] {rule} on {target}: {expr} (value {shown})"
            + (f" — {description}" if description else ""))
    return {
        "text": text,
        "status": status,
        "rule": rule,
        "target": target,
        "expr": expr,
        "severity": severity,
        "value": value,
        "started_at": _when(started_at),
        "resolved_at": _when(resolved_at),
        "description": description,
        "dashboard": dashboard_url,
    }


class Notifier:
    """Sends one payload to one target; raises DeliveryError on failure. The seam that
    tests replace."""

    def __init__(self, smtp: SmtpSettings, timeout_s: float = 10.0) -> None:
        self.smtp = smtp
        self.timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None

    async def send(self, destination: str, payload: dict[str, Any]) -> None:
        kind, _, rest = destination.partition(":")
        if kind in ("webhook", "slack"):
            await self._webhook(rest, payload, redact(destination))
        elif kind == "email":
            await asyncio.to_thread(self._email, [a.strip() for a in rest.split(",")],
                                    payload)
        else:
            raise DeliveryError(f"unknown target kind {kind!r}")

    async def _webhook(self, url: str, payload: dict[str, Any], shown: str) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        try:
            resp = await self._http.post(url, json=payload)
        except httpx.HTTPError as exc:
            # the exception text can quote the URL (and its token): name the kind only
            raise DeliveryError(f"{shown}: {type(exc).__name__}") from None
        if resp.status_code >= 300:
            raise DeliveryError(f"{shown}: HTTP {resp.status_code}")

    def _email(self, to: list[str], payload: dict[str, Any]) -> None:
        smtp = self.smtp
        if not smtp.host:
            raise DeliveryError("email: no SMTP server configured (set LEPTONIC_SMTP_HOST)")
        msg = EmailMessage()
        msg["Subject"] = f"[leptonic] {payload['status'].upper()}: {payload['rule']} on " \
                         f"{payload['target']}"
        msg["From"] = smtp.sender
        msg["To"] = ", ".join(to)
        lines = [payload["text"], ""]
        lines += [f"{k}: {v}" for k, v in payload.items() if k != "text" and v is not None]
        msg.set_content("\n".join(lines))
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as server:
                if smtp.starttls:
                    server.starttls(context=ssl.create_default_context())
                if smtp.user and smtp.password:
                    server.login(smtp.user, smtp.password)
                server.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            # SMTP errors do not echo the password, but keep to the class and code
            code = getattr(exc, "smtp_code", None)
            raise DeliveryError(f"email via {smtp.host}:{smtp.port}: {type(exc).__name__}"
                                + (f" {code}" if code else "")) from None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def backoff(attempts: int, base_s: float, max_s: float) -> float:
    """Seconds to wait after the ``attempts``-th failure: base, 2x, 4x ... capped."""
    return float(min(max_s, base_s * (2 ** max(0, attempts - 1))))
