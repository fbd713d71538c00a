"""Alert e-mail through :mod:`smtplib` (plain SMTP, optional STARTTLS and login)."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from typing import Any

log = logging.getLogger(__name__)

_RANK = {"info": 0, "warning": 1, "critical": 2}


class EmailNotifier:
    """Sends one mail per opened alert.

    Parameters
    ----------
    host : str
        SMTP server.
    port : int
        Its port.
    sender : str
        ``From`` address.
    recipients : list of str
        ``To`` addresses.
    min_severity : str
        Alerts below this severity are not mailed.
    username, password : str, optional
        SMTP login.
    starttls : bool
        Upgrade the connection with STARTTLS first.
    timeout_s : float
        Socket timeout [s].
    """

    def __init__(self, host: str, port: int, sender: str, recipients: list[str], *,
                 min_severity: str = "warning", username: str | None = None,
                 password: str | None = None, starttls: bool = False, timeout_s: float = 10.0):
        if not recipients:
            raise ValueError("alert e-mail needs at least one recipient")
        if min_severity not in _RANK:
            raise ValueError(f"min_severity {min_severity!r} is not one of {list(_RANK)}")
        self.host, self.port, self.sender = host, int(port), sender
        self.recipients = list(recipients)
        self.min_severity = min_severity
        self.username, self.password = username, password
        self.starttls = starttls
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0

    @staticmethod
    def compose(alert: dict[str, Any], sender: str, recipients: list[str]) -> EmailMessage:
        """The mail for one alert record."""
        where = alert.get("device_id") or alert.get("site_id") or "fleet"
        msg = EmailMessage()
        msg["Subject"] = f"[EcoGrid {alert['severity']}] {alert['kind']} at {where}"
        msg["From"] = sender
        msg["To"] = ", ".join(recipients)
        lines = [alert["message"], "", f"alert id: {alert['id']}", f"kind: {alert['kind']}",
                 f"severity: {alert['severity']}", f"site: {alert.get('site_id')}",
                 f"device: {alert.get('device_id')}",
                 f"first seen [Unix s]: {alert.get('first_seen_s', alert.get('created_s'))}"]
        msg.set_content("\n".join(lines))
        return msg

    def send_alert(self, alert: dict[str, Any]) -> bool:
        """Mail one alert; False (logged) when it is below the minimum or sending failed."""
        if _RANK.get(alert.get("severity", "info"), 0) < _RANK[self.min_severity]:
            return False
        msg = self.compose(alert, self.sender, self.recipients)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            self.failed += 1
            log.warning("alert e-mail to %s via %s:%s failed: %s", self.recipients, self.host,
                        self.port, exc)
            return False
        self.sent += 1
        return True
