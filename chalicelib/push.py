"""The push notifier: a "Message Undelivered" event in, a notification on each of the
recipient's phones out, through SNS mobile push (docs/PUSH.md).

An EventBridge rule (``deploy/event_rules.json``: source ``switchboard``, detail-type
``Message Undelivered``) targets app.py's ``push_notifier`` function, which Lambda invokes with
the event itself (``{"source", "detail-type", "detail", ...}``). For each live device of the
detail's ``to`` user (devices.py) it asks SNS for the device's platform endpoint
(``CreatePlatformEndpoint`` is idempotent: "If the endpoint already exists with the same token
and attributes, the action returns the endpoint's ARN", SNS API reference) under the
platform application a ``PUSH_*_APPLICATION_ARN`` setting names, then publishes the
notification to it with ``MessageStructure=json`` (one payload per platform: ``APNS`` /
``APNS_SANDBOX`` carry an ``aps`` dictionary, ``GCM`` an FCM ``notification``; "Send custom
platform-specific payloads in messages to mobile devices", SNS developer guide).

A device SNS reports disabled (``EndpointDisabled``: APNs or FCM said the token is no longer
valid) is deleted from the table, as the platforms ask. The function raises when nothing could
be sent because SNS failed, so Lambda's asynchronous retries and the rule target's dead-letter
queue keep the event; a user without devices, or a platform without an application, is a
logged no-op.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import log
from chalicelib.aws_errors import error_code
from chalicelib.bus import SOURCE, DetailType
from chalicelib.devices import Device, Devices

# Our platform names -> SNS's message-structure keys (and platform application platforms).
SNS_PLATFORM = {"apns": "APNS", "apns_sandbox": "APNS_SANDBOX", "fcm": "GCM"}
TITLE_CHARS = 64
BODY_CHARS = 178  # what a lock screen shows of an APNs alert body before it folds


@dataclass
class PushResult:
    devices: int = 0
    sent: int = 0
    disabled: int = 0  # tokens SNS reported invalid: deleted
    skipped: int = 0  # a platform with no application configured
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "devices": self.devices,
            "sent": self.sent,
            "disabled": self.disabled,
            "skipped": self.skipped,
            "failed": self.failed,
        }


class PushFailed(Exception):
    """Every send failed on SNS: raised so that Lambda retries the event (then the DLQ)."""


def notification(detail: dict[str, Any], platform: str) -> str:
    """The ``MessageStructure=json`` message for one platform: the sender as title, the
    preview as body, and where the message is (stream, seq) for the app to open it."""
    title = str(detail.get("from", ""))[:TITLE_CHARS]
    body = str(detail.get("preview", ""))[:BODY_CHARS] or "New message"
    where = {"stream": detail.get("stream"), "seq": detail.get("seq"), "event": detail.get("event")}
    key = SNS_PLATFORM[platform]
    if key == "GCM":
        payload: dict[str, Any] = {
            "notification": {"title": title, "body": body},
            "data": {k: str(v) for k, v in where.items()},  # FCM data values are strings
        }
    else:
        payload = {"aps": {"alert": {"title": title, "body": body}, "sound": "default"}, **where}
    return json.dumps({"default": body, key: json.dumps(payload, separators=(",", ":"))})


# SNS's answer when an endpoint with this token exists with other attributes (e.g. disabled):
# "Invalid parameter: Token Reason: Endpoint <arn> already exists with the same Token, but
# different attributes." ("Mobile token management with Amazon SNS", SNS developer guide,
# whose pseudo-code takes the ARN from this message).
_EXISTING_RE = re.compile(r"Endpoint (arn:\S+) already exists with the same [Tt]oken")


class PushNotifier:
    """Sends a "Message Undelivered" event's notification to the recipient's devices."""

    def __init__(self, devices: Devices, sns: Any, applications: dict[str, str]) -> None:
        self._devices = devices
        self._sns = sns
        # Our platform name -> its SNS platform application ARN (only the configured ones).
        self._applications = applications

    def handle(self, event: dict[str, Any]) -> PushResult:
        """One EventBridge event. Anything but an undelivered message is ignored (a rule
        routed it here by mistake): logged, not retried."""
        result = PushResult()
        detail = event.get("detail")
        if (
            event.get("source") != SOURCE
            or event.get("detail-type") != DetailType.MESSAGE_UNDELIVERED
            or not isinstance(detail, dict)
            or not isinstance(detail.get("to"), str)
        ):
            log.emit(logging.WARNING, event="push_ignored", detailType=event.get("detail-type"))
            return result
        user = detail["to"]
        with log.event_log(event="push", userId=user, eventId=detail.get("eventId")) as record:
            for device in self._devices.for_user(user):
                result.devices += 1
                self._send(device, detail, result)
            record.update(result.as_dict())
        if result.failed and not result.sent:
            raise PushFailed(f"{result.failed} notifications failed; see the log")
        return result

    def _endpoint(self, application: str, token: str) -> str:
        """The platform endpoint of ``token``: created, or the existing one SNS names."""
        try:
            arn = self._sns.create_platform_endpoint(
                PlatformApplicationArn=application, Token=token
            )["EndpointArn"]
            return str(arn)
        except ClientError as exc:
            found = _EXISTING_RE.search(str(exc.response.get("Error", {}).get("Message", "")))
            if error_code(exc) == "InvalidParameter" and found:
                return found.group(1)
            raise

    def _send(self, device: Device, detail: dict[str, Any], result: PushResult) -> None:
        application = self._applications.get(device.platform)
        if application is None:
            result.skipped += 1
            return
        try:
            endpoint = self._endpoint(application, device.token)
            self._sns.publish(
                TargetArn=endpoint,
                MessageStructure="json",
                Message=notification(detail, device.platform),
            )
            result.sent += 1
        except ClientError as exc:
            code = error_code(exc)
            if code in ("EndpointDisabled", "EndpointDisabledException"):
                # The platform said the token is dead: forget the device.
                self._devices.remove(device.user_id, device.device_id)
                result.disabled += 1
                return
            log.emit(logging.WARNING, event="push_error", deviceId=device.device_id, error=code)
            result.failed += 1
        except BotoCoreError as exc:
            log.emit(
                logging.WARNING,
                event="push_error",
                deviceId=device.device_id,
                error=type(exc).__name__,
            )
            result.failed += 1
