"""LocalGateway: the whole local stack (DynamoDB, WebSocket API, REST API) in one process.

Start order matters: the WebSocket port must be bound before the app is imported, because
the app reads ``APIGW_MANAGEMENT_ENDPOINT`` (which contains that port) from its
environment, and the environment must be complete before ``import app`` just as it is
when Lambda starts a container.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from local_gateway.dynamodb import (
    EmbeddedDynamoDB,
    dynamodb_client,
    ensure_table,
    load_table_schema,
)
from local_gateway.events import DEFAULT_BUS, DEFAULT_RULES, LocalEvents
from local_gateway.faults import FaultConfig, FaultInjector
from local_gateway.lambda_events import LambdaContext, new_api_id, new_aws_id
from local_gateway.lambda_invoke import LocalFunctions, app_functions
from local_gateway.lambda_runtime import ChaliceProject, Invocation, LambdaRuntime, import_app
from local_gateway.quotas import Quotas
from local_gateway.server import WebSocketServer
from local_gateway.sigv4 import Credentials, SigV4Verifier
from local_gateway.sqs import LocalQueues, sqs_sources
from local_gateway.stats import GatewayStats

log = logging.getLogger("local_gateway")

T = TypeVar("T")

DEFAULT_SCHEMA = os.path.join("chalicelib", "schema.json")


@dataclass(frozen=True)
class GatewayURLs:
    websocket: str  # ws://127.0.0.1:8001/api
    management: str  # http://127.0.0.1:8001/api (endpoint_url for apigatewaymanagementapi)
    rest: str | None  # http://127.0.0.1:8000 or None when the REST server is off
    dynamodb: str  # the DynamoDB endpoint the app uses


class InvocationLog:
    """Every finished handler invocation, with a blocking wait for tests."""

    def __init__(self, maxlen: int = 2000) -> None:
        self._items: collections.deque[Invocation] = collections.deque(maxlen=maxlen)
        self._cond = threading.Condition()

    def append(self, record: Invocation) -> None:
        with self._cond:
            self._items.append(record)
            self._cond.notify_all()

    def find(
        self, route_key: str | None = None, connection_id: str | None = None
    ) -> list[Invocation]:
        with self._cond:
            return [
                r
                for r in self._items
                if (route_key is None or r.route_key == route_key)
                and (connection_id is None or r.connection_id == connection_id)
            ]

    def wait_for(
        self,
        route_key: str | None = None,
        connection_id: str | None = None,
        timeout: float = 5.0,
        count: int = 1,
    ) -> list[Invocation]:
        """Block until at least ``count`` matching invocations finished; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    r
                    for r in self._items
                    if (route_key is None or r.route_key == route_key)
                    and (connection_id is None or r.connection_id == connection_id)
                ]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"waited {timeout:.1f}s for {count} {route_key or 'any'} invocation(s), saw {len(found)}"
                    )
                self._cond.wait(remaining)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()


class RestServer:
    """Chalice's own local REST server (what ``chalice local`` runs) on a thread."""

    def __init__(
        self, app: Any, config: Any, host: str, port: int, allowed_hosts: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.config = config
        self.host = host
        self.port = port
        self.allowed_hosts = list(allowed_hosts)
        self._dev: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        from chalice.local import create_local_server

        from local_gateway import rest_hosts

        self._dev = create_local_server(self.app, self.config, self.host, self.port)
        self.port = self._dev.server.server_address[1]
        # The WebSocket port's Host allow-list here too (DNS rebinding): rest_hosts.py.
        rest_hosts.guard(self._dev, self.app, self.config, self.host, self.allowed_hosts)
        # serve_forever on the inner server: LocalDevServer's own prints a line per start.
        self._thread = threading.Thread(
            target=self._dev.server.serve_forever,
            # shutdown() waits up to one poll interval (default 0.5 s).
            kwargs={"poll_interval": 0.05},
            name="local-gateway-rest",
            daemon=True,
        )
        self._thread.start()
        return int(self.port)

    def stop(self) -> None:
        if self._dev is not None:
            self._dev.server.shutdown()
            self._dev.server.server_close()
            self._dev = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class LocalGateway:
    """API Gateway (WebSocket + REST) and DynamoDB for a Chalice project, in this process.

    Ports default to the documented 8001/8000; pass 0 for ephemeral ports (tests).
    ``rest_port=None`` skips the REST server. ``schema_path=None`` uses
    ``chalicelib/schema.json`` if the project has one, ``""`` creates no table.
    ``limits`` are API Gateway's quotas (``Quotas()``: AWS's defaults).
    ``custom_domain`` emulates a custom domain name mapped to the stage at ``base_path``
    (``""``: the root): events carry it as ``domainName`` and @connections requests whose
    Host is that name are served under ``/{base_path}`` instead of ``/{stage}``.
    The gateway sets process environment variables while it runs (the app reads them at
    import and call time) and restores them on ``stop()``, so run one gateway at a time
    per process.

    The app gets AWS credentials of this run only (``credentials``, default random; or the
    pair the app's own environment names): the management API and the embedded DynamoDB
    refuse requests not signed with them. ``management_client()`` and ``dynamodb_client()``
    sign with them.
    """

    def __init__(
        self,
        project_dir: str = ".",
        *,
        chalice_stage: str = "dev",
        host: str = "127.0.0.1",
        ws_port: int = 8001,
        rest_port: int | None = 8000,
        schema_path: str | None = None,
        table_env: str = "CONNECTIONS_TABLE",
        dynamodb_endpoint: str | None = None,
        dynamodb_latency_ms: float = 0.0,
        region: str | None = None,
        auth_mode: str | None = None,
        env: dict[str, str] | None = None,
        limits: Quotas | None = None,
        faults: FaultConfig | FaultInjector | None = None,
        workers: int = 64,
        connection_id_factory: Callable[[], str] = new_aws_id,
        api_id: str | None = None,
        invocation_log_size: int = 2000,
        custom_domain: str | None = None,
        base_path: str = "",
        credentials: Credentials | None = None,
        allowed_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        events: bool = False,
        event_bus: str = DEFAULT_BUS,
        event_rules: str | None = None,
        queue_url_env: str | None = None,
        queue_visibility_timeout: int = 30,
        queue_max_receives: int = 5,
    ) -> None:
        self.project_dir = os.path.abspath(project_dir)
        self.chalice_stage = chalice_stage
        self.host = host
        self.ws_port = ws_port
        self.rest_port = rest_port
        self.schema_path = schema_path
        self.table_env = table_env
        self.dynamodb_endpoint = dynamodb_endpoint
        self.dynamodb_latency_ms = dynamodb_latency_ms
        self.region = (
            region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        self.auth_mode = auth_mode
        self.extra_env = dict(env or {})
        self.limits = limits or Quotas()
        self.faults = faults if isinstance(faults, FaultInjector) else FaultInjector(faults)
        self.workers = workers
        self.connection_id_factory = connection_id_factory
        self.api_id = api_id or new_api_id()
        self.custom_domain = custom_domain
        self.base_path = base_path.strip("/")
        # Bounded: events carry message bodies (up to 128 KB) and benchmarks send many.
        self.invocations = InvocationLog(invocation_log_size)
        self.credentials = credentials or Credentials.generate()
        # Besides the REST server's own origin (the demo page) and clients sending no Origin.
        self.allowed_origins = list(allowed_origins)
        # Besides the bound address, 127.0.0.1 and localhost (DNS rebinding).
        self.allowed_hosts = list(allowed_hosts)
        # Back-end events (local_gateway/events.py): the embedded EventBridge, its rules (the
        # project's deploy/event_rules.json unless named) and the sink at GET /events.
        self.events_enabled = events
        self.event_bus = event_bus
        self.event_rules = event_rules
        self.local_events: LocalEvents | None = None
        # The app's variable for its SQS handler's queue URL (make run: CONTINUATION_QUEUE_URL),
        # set once the embedded queue exists; and that queue's settings, as deployed.
        self.queue_url_env = queue_url_env
        self.queue_visibility_timeout = queue_visibility_timeout
        self.queue_max_receives = queue_max_receives

        self.project: ChaliceProject | None = None
        self.app: Any = None
        self.app_module: Any = None
        self.table_name: str | None = None
        self.urls: GatewayURLs | None = None
        self.environment: dict[str, str] = {}
        self._dynamodb: EmbeddedDynamoDB | None = None
        self._queues: LocalQueues | None = None  # the app's on_sqs_message handlers
        self._functions: LocalFunctions | None = None  # the app's @app.lambda_functions
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._server: WebSocketServer | None = None
        self._rest: RestServer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._env_backup: dict[str, str | None] = {}
        self._sys_path_added = False

    # -- public API ----------------------------------------------------------------------

    def start(self) -> GatewayURLs:
        if self.urls is not None:
            raise RuntimeError("gateway already started")
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close every socket (1001, $disconnect runs), stop servers, restore the env."""
        if self._server is not None and self._loop is not None and self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(timeout=15)
            except Exception:  # shutting down anyway
                log.warning("error while stopping the WebSocket server", exc_info=True)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
            if not self._loop.is_running():
                self._loop.close()
        self._loop = self._loop_thread = self._server = None
        if self._queues is not None:
            self._queues.stop()
            self._queues = None
        if self.local_events is not None:
            self.local_events.stop()
            self.local_events = None
        if self._functions is not None:
            self._functions.stop()
            self._functions = None
        # DynamoDB last-but-parallel: $disconnect handlers (run above) may still need it,
        # and moto's server takes up to its 0.5 s poll interval to stop.
        dynamodb_stopper = None
        if self._dynamodb is not None:
            dynamodb_stopper = threading.Thread(target=self._dynamodb.stop, daemon=True)
            dynamodb_stopper.start()
        if self._rest is not None:
            self._rest.stop()
            self._rest = None
        if self._executor is not None:
            # Do not wait for handlers stuck past their timeout; they are daemon-ish.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if dynamodb_stopper is not None:
            dynamodb_stopper.join(timeout=10)
            self._dynamodb = None
        self._restore_env()
        self._restore_default_credentials()
        if self._sys_path_added and self.project_dir in sys.path:
            sys.path.remove(self.project_dir)
        self._sys_path_added = False
        self.urls = None

    def __enter__(self) -> LocalGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stage(self) -> str:
        assert self.project is not None, "start() first"
        return self.project.api_gateway_stage

    @property
    def ws_port_bound(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.port)

    def set_faults(self, config: FaultConfig | None = None, **changes: Any) -> FaultConfig:
        """Change fault injection while running, e.g. ``set_faults(throttle_rate=0.1, seed=1)``."""
        return self.faults.configure(config, **changes)

    def connection_ids(self) -> list[str]:
        return self._call(self._list_ids())

    def stats(self) -> GatewayStats:
        """A snapshot of the gateway's counters (see ``GatewayStats``)."""
        return self._call(self._stats())

    def management_client(
        self,
        max_pool_connections: int = 10,
        retries: dict[str, Any] | None = None,
        **config_options: Any,
    ) -> Any:
        """A boto3 apigatewaymanagementapi client for this gateway (the app's credentials).

        Extra keyword arguments go to ``botocore.config.Config``.
        """
        import boto3
        from botocore.config import Config

        assert self.urls is not None, "start() first"
        config = Config(
            max_pool_connections=max_pool_connections,
            retries=retries or {"mode": "standard"},
            **config_options,
        )
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.urls.management,
            region_name=self.region,
            config=config,
            **self.credentials.boto3_kwargs(),
        )

    def dynamodb_client(self) -> Any:
        """A boto3 DynamoDB client for the app's DynamoDB endpoint, with the app's credentials."""
        assert self.urls is not None, "start() first"
        return dynamodb_client(self.urls.dynamodb, self.region, self.credentials)

    # -- internals -------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        assert self._loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _list_ids(self) -> list[str]:
        assert self._server is not None
        return list(self._server.connections)

    async def _stats(self) -> GatewayStats:
        assert self._server is not None
        return self._server.stats_snapshot()

    def _resolve_schema(self) -> str | None:
        if self.schema_path is None:
            candidate = os.path.join(self.project_dir, DEFAULT_SCHEMA)
            return candidate if os.path.isfile(candidate) else None
        if not self.schema_path:
            return None
        if os.path.isabs(self.schema_path) or os.path.exists(self.schema_path):
            return os.path.abspath(self.schema_path)
        return os.path.join(self.project_dir, self.schema_path)

    def _start(self) -> GatewayURLs:
        project = self.project = ChaliceProject.load(self.project_dir, self.chalice_stage)
        env = project.environment_variables
        if self.auth_mode is not None:
            env["AUTH_MODE"] = self.auth_mode
        env.update(self.extra_env)
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            # The app's environment names its own credentials (e.g. for an external DynamoDB):
            # those are what it signs with, so those are what the gateway checks.
            self.credentials = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])

        if self.dynamodb_endpoint:
            dynamodb_url = self.dynamodb_endpoint
        else:
            self._dynamodb = EmbeddedDynamoDB(
                host=self.host,
                port=0,
                region=self.region,
                credentials=self.credentials,
                latency_ms=self.dynamodb_latency_ms,
            )
            dynamodb_url = self._dynamodb.start()

        # The event loop that serves every socket; handlers run in the executor.
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="lambda")
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="local-gateway-ws", daemon=True
        )
        self._loop_thread.start()
        self._server = WebSocketServer(
            host=self.host,
            port=self.ws_port,
            stage=project.api_gateway_stage,
            api_id=self.api_id,
            executor=self._executor,
            limits=self.limits,
            faults=self.faults,
            connection_id_factory=self.connection_id_factory,
            on_invocation=self.invocations.append,
            custom_domain=self.custom_domain,
            base_path=self.base_path,
            verifier=SigV4Verifier(self.credentials, "execute-api", self.region),
            allowed_origins=self.allowed_origins,
            # The API's execute-api name stands for this port too (a name under amazonaws.com,
            # which no rebinding page can make its own).
            allowed_hosts=[
                *self.allowed_hosts,
                f"{self.api_id}.execute-api.{self.region}.amazonaws.com",
            ],
        )
        self._call(self._server.start())
        ws_port = self._server.port
        management = f"http://{self.host}:{ws_port}/{project.api_gateway_stage}"
        # Lambda's Invoke API for the app's plain functions (moto's would need Docker).
        self._functions = LocalFunctions(
            self.host, self.region, self.credentials, self.invocations.append
        )
        lambda_url = self._functions.bind()

        env.update(
            {
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url,
                # moto serves every service on one port: SQS for on_sqs_message handlers,
                # EventBridge and SNS for back-end events and push (events.py).
                "AWS_ENDPOINT_URL_SQS": dynamodb_url,
                "AWS_ENDPOINT_URL_EVENTBRIDGE": dynamodb_url,
                "AWS_ENDPOINT_URL_SNS": dynamodb_url,
                "AWS_ENDPOINT_URL_LAMBDA": lambda_url,
                "APIGW_MANAGEMENT_ENDPOINT": management,
                # Also route SDK clients built without endpoint_url to the local management API.
                "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": management,
            }
        )
        # Always the run's own credentials: the developer's real ones (or a profile's) must
        # never reach local endpoints, and a session token would not belong to them.
        env["AWS_ACCESS_KEY_ID"] = self.credentials.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = self.credentials.secret_access_key
        if self.events_enabled and self.dynamodb_endpoint:
            log.warning("events need the embedded moto server: not with --dynamodb-endpoint")
        elif self.events_enabled:
            rules = Path(self.event_rules or Path(self.project_dir) / DEFAULT_RULES)
            self.local_events = LocalEvents(
                dynamodb_url, self.region, self.credentials, self.event_bus, rules
            )
            env.update(self.local_events.create(env))
            self._server.pages["/events"] = self.local_events.page
        self.environment = env
        self._apply_env(env)
        self._unset_env(("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"))

        schema_file = self._resolve_schema()
        self.table_name = env.get(self.table_env)
        if schema_file and self.table_name:
            client = dynamodb_client(dynamodb_url, self.region, self.credentials)
            created = ensure_table(client, self.table_name, load_table_schema(schema_file))
            log.info("table %s %s", self.table_name, "created" if created else "exists")
        elif schema_file:
            log.warning(
                "schema %s given but %s is not set for stage %s: no table created",
                schema_file,
                self.table_env,
                self.chalice_stage,
            )

        # boto3's default session keeps the credentials it first resolved: one left by an
        # earlier gateway (or test) in this process would sign with that run's. Give it this
        # run's; a new session instead would cost the first handler ~0.2 s of model loading.
        import boto3

        if boto3.DEFAULT_SESSION is not None:
            # Put back on stop: later code in this process (other tests) must not sign with
            # this run's credentials.
            self._saved_default_credentials = (
                boto3.DEFAULT_SESSION,
                boto3.DEFAULT_SESSION._session._credentials,
            )
            boto3.DEFAULT_SESSION._session.set_credentials(
                self.credentials.access_key_id, self.credentials.secret_access_key
            )
        self._sys_path_added = self.project_dir not in sys.path
        self.app_module, self.app = import_app(self.project_dir)
        websocket_api = getattr(self.app, "websocket_api", None)
        if websocket_api is not None and getattr(websocket_api, "_endpoint", "") is None:
            # Chalice's own app.websocket_api.send() would build https://{apiId}.execute-api...
            # from the event; point it here instead (it keeps an endpoint once configured).
            websocket_api._endpoint = management
        runtime = LambdaRuntime(
            project, self.app, self.region, int(self.limits.integration_timeout * 1000)
        )
        self._server.runtime = runtime
        self._queues = LocalQueues(
            dynamodb_url,
            self.region,
            self.credentials,
            visibility_timeout=self.queue_visibility_timeout,
            max_receives=self.queue_max_receives,
        )
        self._queues.start(
            self.app,
            lambda source: LambdaContext(
                f"{project.app_name}-{project.chalice_stage}-{source.name}",
                project.lambda_memory_size,
                int(self.limits.integration_timeout * 1000),
                self.region,
            ),
            self.invocations.append,
        )

        self._functions.start(app_functions(self.app, project))

        if self.local_events is not None:
            self.local_events.start(
                self.app,
                lambda name: LambdaContext(
                    f"{project.app_name}-{project.chalice_stage}-{name}",
                    project.lambda_memory_size,
                    int(self.limits.integration_timeout * 1000),
                    self.region,
                ),
                self.invocations.append,
            )
        if self.queue_url_env:
            self._export_queue_url(self.queue_url_env)

        rest_url = None
        if self.rest_port is not None:
            self._rest = RestServer(
                self.app, project.chalice_config(), self.host, self.rest_port, self.allowed_hosts
            )
            rest_port = self._rest.start()
            rest_url = f"http://{self.host}:{rest_port}"
            # The demo page's origin, however the developer's browser names the host.
            self._server.allowed_origins.update(
                f"http://{name}:{rest_port}" for name in {self.host, "127.0.0.1", "localhost"}
            )

        self.urls = GatewayURLs(
            websocket=f"ws://{self.host}:{ws_port}/{project.api_gateway_stage}",
            management=management,
            rest=rest_url,
            dynamodb=dynamodb_url,
        )
        return self.urls

    def _export_queue_url(self, name: str) -> None:
        """Give the app the URL of its one SQS handler's queue in ``name`` (before any handler
        runs: the app reads its settings at its first invocation)."""
        assert self._queues is not None
        sources = sqs_sources(self.app)
        if len(sources) != 1:
            raise ValueError(
                f"queue_url_env needs exactly one on_sqs_message handler, the app has "
                f"{len(sources)}"
            )
        url = self._queues.urls[sources[0].queue]
        self.environment[name] = url
        self._apply_env({name: url})
        log.info("%s=%s (dead letters: %s-dlq)", name, url, sources[0].queue)

    def _apply_env(self, env: dict[str, str]) -> None:
        for key, value in env.items():
            if key not in self._env_backup:
                self._env_backup[key] = os.environ.get(key)
            os.environ[key] = value

    def _unset_env(self, names: tuple[str, ...]) -> None:
        for key in names:
            if key in os.environ and key not in self._env_backup:
                self._env_backup[key] = os.environ.pop(key)

    def _restore_default_credentials(self) -> None:
        saved = getattr(self, "_saved_default_credentials", None)
        if saved is None:
            return
        import boto3

        session, credentials = saved
        if boto3.DEFAULT_SESSION is session:
            session._session._credentials = credentials
        self._saved_default_credentials = None

    def _restore_env(self) -> None:
        for key, value in self._env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._env_backup = {}
