"""Fixture app with only a message handler, replying through Chalice's own websocket_api.send.

It has no $connect/$disconnect handler, no table and a custom API stage ("v1").
"""

from __future__ import annotations

from typing import Any

import boto3
from chalice import Chalice

app = Chalice(app_name="bare-fixture")
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.websocket_api.session = boto3.session.Session()


@app.on_ws_message()
def message(event: Any) -> None:
    app.websocket_api.send(event.connection_id, "bare:" + event.body)
