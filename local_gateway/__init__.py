"""Local API Gateway WebSocket emulator for Chalice apps (never deployed).

``chalice local`` serves REST routes only. This package runs a whole Chalice project on one
machine, behaving like API Gateway + Lambda + DynamoDB, so the app needs no local branches:

* an embedded DynamoDB (moto's server, in-process) with the table created from a schema file;
* the WebSocket API at ``ws://127.0.0.1:8001/{stage}`` running the app's real
  ``on_ws_connect`` / ``on_ws_message`` / ``on_ws_disconnect`` Lambdas (found by their
  handler string, like Lambda does) with API-Gateway-shaped events;
* the management API on the same port: ``POST|GET|DELETE /{stage}/@connections/{id}``;
* the REST routes at ``http://127.0.0.1:8000`` (Chalice's own local server).

Run it
------
``python -m local_gateway [flags]`` (``make run``). It prints a banner with the URLs; connect
with ``python -m websockets 'ws://127.0.0.1:8001/api?userId=u_123'``. Ctrl-C (or SIGTERM)
closes every socket with 1001, runs ``$disconnect`` for each, and exits 0.

The app learns its endpoints from the environment, set before ``app.py`` is imported:
the chalice stage's ``environment_variables`` (top level merged with the stage's),
``AWS_REGION``/``AWS_DEFAULT_REGION``, dummy credentials when none are configured,
``AWS_ENDPOINT_URL_DYNAMODB`` (the DynamoDB endpoint), ``APIGW_MANAGEMENT_ENDPOINT`` and
``AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`` (both ``http://127.0.0.1:8001/{stage}``).
Chalice's own ``app.websocket_api.send()`` is pointed at the local endpoint too.

Flags
-----
=========================  ======================  ==============================================
flag                       default                 meaning
=========================  ======================  ==============================================
``--project-dir``          ``.``                   Chalice project (app.py, .chalice/config.json)
``--stage``                ``dev``                 chalice stage whose env vars are used
``--env KEY=VALUE``        (none)                  extra env var for the app; repeatable
``--auth-mode``            (config's)              overrides ``AUTH_MODE`` (switchboard: ``none``)
``--region``               $AWS_REGION/us-east-1   region given to the app
``--host``                 ``127.0.0.1``           interface to bind
``--port``                 ``8000``                REST API port; 0 = any free port
``--ws-port``              ``8001``                WebSocket + @connections port; 0 = any free
``--no-rest``              off                     do not start the REST server
``--custom-domain``        (none)                  custom domain in events; @connections by Host
``--base-path``            (root)                  the custom domain's API mapping path
``--write-env-file``       (none)                  write the app's env there (chalice local)
``--schema``               chalicelib/schema.json  table schema JSON (CreateTable keys +
                                                   ``TimeToLiveAttribute``; ``_`` keys ignored)
``--table-env``            ``CONNECTIONS_TABLE``   env var holding the table name
``--dynamodb-endpoint``    (embedded moto)         use an existing DynamoDB (table still created)
``--dynamodb-latency-ms``  ``0``                   hold every embedded-DynamoDB call this long
``--idle-timeout``         ``600``                 seconds without frames before close 1001
``--max-duration``         ``7200``                connection lifetime in seconds (close 1001)
``--integration-timeout``  ``29``                  handler timeout (504 on connect, frame after)
``--send-buffer-limit``    ``1048576``             bytes queued to a slow client before POST 429
``--workers``              ``64``                  handler thread pool (concurrent "Lambdas")
``--latency-ms``           ``0``                   fault: added latency on every @connections call
``--throttle-rate``        ``0``                   fault: share of POSTs answered 429
``--error-rate``           ``0``                   fault: share of POSTs answered 500
``--fault-seed``           (random)                fault RNG seed, for reproducible runs
``--log-level``            ``INFO``                DEBUG, INFO, WARNING, ERROR
=========================  ======================  ==============================================

The stage in the URLs is ``api_gateway_stage`` from ``.chalice/config.json`` (default ``api``).

Python API (tests and benchmarks)
---------------------------------
::

    from local_gateway import FaultConfig, Quotas, LocalGateway

    limits = Quotas(idle_timeout=5.0)  # API Gateway's quotas, shrunk for a test
    with LocalGateway(".", ws_port=0, rest_port=0, auth_mode="none", limits=limits) as gw:
        gw.urls.websocket   # ws://127.0.0.1:PORT/api   (also .management, .rest, .dynamodb)
        client = gw.management_client(max_pool_connections=64)
        gw.set_faults(throttle_rate=0.1, seed=1)
        gw.invocations.wait_for("$disconnect", connection_id, timeout=5)
        gw.connection_ids(); gw.stats().posts_ok

``EmbeddedDynamoDB(port=0).start()`` runs the DynamoDB alone. ``tests/e2e/conftest.py``
provides ``gateway_factory`` and ``ws_connect`` fixtures.

What is copied from AWS
-----------------------
* ``$connect`` runs before the handshake completes; a non-2xx ``statusCode`` refuses it with
  that status and body; a raising handler refuses with 502 (an invalid result with 500), a
  slow one with 504.
* A raising ``$default`` handler sends AWS's exact bytes ``{"message": "Internal server
  error", "connectionId":"...", "requestId":"..."}`` and keeps the socket open (``Endpoint
  request timed out`` on timeout; ``Forbidden`` when the app has no message handler).
* A binary frame from a client closes the socket with 1003; no handler sees it.
* Events carry API Gateway's fields and leave out the ones AWS leaves out (query maps without
  a query string, ``identity.userAgent`` without a User-Agent); ``$connect`` headers carry no
  Connection/Upgrade, ``$disconnect`` has AWS's fixed four headers. Ids look like
  ``JC1dgf9yoAMCK-g=`` (11 random bytes, URL-safe base64; URL-encode the ``=``).
* @connections: POST delivers a text message (binary if not UTF-8) in frames of at most 32 KB;
  GET returns ConnectedAt/LastActiveAt/Identity; DELETE closes the socket (1000 "Connection
  Closed Normally") and answers 204.
  Errors carry ``x-amzn-ErrorType`` so boto3 raises ``GoneException`` (410: unknown or closed
  id), ``PayloadTooLargeException`` (413: over 131072 bytes), ``ForbiddenException`` (403:
  unsigned request or unknown path), ``InvalidSignatureException`` /
  ``UnrecognizedClientException`` (403: not signed with ``LocalGateway.credentials``, the
  app's per-run pair), ``LimitExceededException`` (429: client not reading and
  its buffer full, or injected), ``InternalServerErrorException`` (500, injected; a plain
  ``ClientError`` since botocore's model has no such class).
* Client messages over 128 KB or frames over 32 KB close the socket with 1009.
* Idle timeout and maximum duration close with 1001 "Going away".
* ``$disconnect`` runs on every close with ``requestContext.disconnectStatusCode`` /
  ``disconnectReason``: the client's code, 1005 "Client-side close frame status not set"
  without one, the gateway's (1001, 1009, 1000 after DELETE), or 1006 on a dropped socket.

Differences from AWS
--------------------
* Plain ``ws://``/``http://``.
* No custom route keys (Chalice creates only ``$default``), no route responses, no
  API Gateway authorizers, no API keys, no permessage-deflate.
* The app's ``@app.lambda_function``s are served through Lambda's Invoke API
  (``AWS_ENDPOINT_URL_LAMBDA``, ``lambda_invoke.py``) and run in-process, as its SQS
  handlers are; a timed-out function keeps running in its thread.
* Not enforced: 500 new connections/s, per-connection rates; the account's 10,000 rps only with
  --account-rps. Use the fault flags to simulate other throttling.
* Idle time counts frames in both directions (pings included). See docs/LOCAL.md, "Where it
  differs from AWS" for the rest.
* Handlers run as threads in one process: module globals are shared by concurrent
  invocations (a real Lambda container runs one at a time), there are no cold starts, and a
  timed-out handler keeps running. The environment is process-wide: per-function
  ``lambda_functions`` env vars in config.json are not applied.
* moto's state is in-process and is reset when the embedded DynamoDB stops.
"""

from __future__ import annotations

from local_gateway.dynamodb import EmbeddedDynamoDB, ensure_table, load_table_schema
from local_gateway.emulator import GatewayURLs, InvocationLog, LocalGateway
from local_gateway.faults import FaultConfig, FaultInjector
from local_gateway.lambda_runtime import Invocation
from local_gateway.quotas import Quotas
from local_gateway.stats import GatewayStats

__all__ = [
    "EmbeddedDynamoDB",
    "FaultConfig",
    "FaultInjector",
    "GatewayStats",
    "GatewayURLs",
    "Invocation",
    "InvocationLog",
    "Quotas",
    "LocalGateway",
    "ensure_table",
    "load_table_schema",
]
