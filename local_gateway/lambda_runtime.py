"""Load a Chalice project (config, stage env, app module) and invoke its websocket Lambdas.

Handlers are found the way Lambda finds them: each websocket handler registration carries a
``handler_string`` such as ``app.connect``; Lambda imports the module and calls that
attribute with ``(event, context)``. Doing the same here means a handler that works locally
works deployed (and one that would break deployed, e.g. an unwrapped Blueprint handler,
breaks here too).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local_gateway.lambda_events import LambdaContext

log = logging.getLogger("local_gateway.lambda")

ROUTE_KEYS = ("$connect", "$default", "$disconnect")
# Chalice names the websocket Lambdas after these (see chalice/deploy/models.py).
FUNCTION_SUFFIX = {
    "$connect": "websocket_connect",
    "$default": "websocket_message",
    "$disconnect": "websocket_disconnect",
}


class ProjectError(Exception):
    """The project dir is not a usable Chalice project."""


@dataclass
class ChaliceProject:
    """A Chalice project dir with one chalice stage selected."""

    project_dir: str
    chalice_stage: str
    config_from_disk: dict[str, Any]

    @classmethod
    def load(cls, project_dir: str, chalice_stage: str = "dev") -> ChaliceProject:
        project_dir = os.path.abspath(project_dir)
        if not os.path.isfile(os.path.join(project_dir, "app.py")):
            raise ProjectError(f"no app.py in {project_dir}")
        config_path = os.path.join(project_dir, ".chalice", "config.json")
        config: dict[str, Any] = {}
        if os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as fh:
                config = json.load(fh)
        return cls(project_dir=project_dir, chalice_stage=chalice_stage, config_from_disk=config)

    def chalice_config(self) -> Any:
        """chalice.config.Config for the stage (what ``chalice local`` uses)."""
        from chalice.config import Config

        return Config.create(
            chalice_stage=self.chalice_stage,
            project_dir=self.project_dir,
            config_from_disk=self.config_from_disk,
            app_name=self.app_name,
        )

    @property
    def app_name(self) -> str:
        return str(self.config_from_disk.get("app_name") or os.path.basename(self.project_dir))

    def _stage_value(self, key: str, default: Any) -> Any:
        stage = self.config_from_disk.get("stages", {}).get(self.chalice_stage, {})
        if key in stage:
            return stage[key]
        return self.config_from_disk.get(key, default)

    @property
    def api_gateway_stage(self) -> str:
        return str(self._stage_value("api_gateway_stage", "api"))

    @property
    def lambda_memory_size(self) -> int:
        return int(self._stage_value("lambda_memory_size", 128))

    @property
    def lambda_timeout(self) -> int:
        return int(self._stage_value("lambda_timeout", 60))

    @property
    def environment_variables(self) -> dict[str, str]:
        """Top-level environment_variables overlaid with the stage's (Chalice's merge)."""
        env = dict(self.config_from_disk.get("environment_variables", {}))
        stage = self.config_from_disk.get("stages", {}).get(self.chalice_stage, {})
        env.update(stage.get("environment_variables", {}))
        return {str(k): str(v) for k, v in env.items()}

    def function_name(self, route_key: str) -> str:
        return f"{self.app_name}-{self.chalice_stage}-{FUNCTION_SUFFIX[route_key]}"


def _forget_foreign_modules(project_dir: str) -> None:
    """Drop a previously imported ``app``/``chalicelib`` that belongs to another project.

    Tests start gateways for several projects in one process; each has its own app.py and
    maybe its own chalicelib, all imported under the same names.
    """
    for name in list(sys.modules):
        if name == "app" or name == "chalicelib" or name.startswith("chalicelib."):
            module = sys.modules[name]
            path = getattr(module, "__file__", None) or ""
            if not os.path.abspath(path).startswith(project_dir + os.sep):
                del sys.modules[name]


def import_app(project_dir: str) -> tuple[Any, Any]:
    """Import ``app.py`` as module ``app`` (as Chalice and Lambda do) and find the app object."""
    from chalice.app import Chalice

    project_dir = os.path.abspath(project_dir)
    _forget_foreign_modules(project_dir)
    if project_dir not in sys.path:
        sys.path.insert(0, project_dir)
    vendor = os.path.join(project_dir, "vendor")
    if os.path.isdir(vendor) and vendor not in sys.path:
        sys.path.append(vendor)
    spec = importlib.util.spec_from_file_location("app", os.path.join(project_dir, "app.py"))
    if spec is None or spec.loader is None:
        raise ProjectError(f"cannot import app.py from {project_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop("app", None)
        raise
    app = getattr(module, "app", None)
    if not isinstance(app, Chalice):
        # Any name works for Chalice's own tooling as long as it is a Chalice instance.
        found = [v for v in vars(module).values() if isinstance(v, Chalice)]
        if len(found) != 1:
            raise ProjectError("app.py must define exactly one Chalice app object")
        app = found[0]
    return module, app


def resolve_handler(app: Any, route_key: str) -> Callable[[dict, Any], Any] | None:
    """The Lambda-callable for a websocket route, or None if the app has no such handler."""
    registration = getattr(app, "websocket_handlers", {}).get(route_key)
    if registration is None:
        return None
    module_name, _, attr = registration.handler_string.rpartition(".")
    try:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        func = getattr(module, attr, None)
    except ImportError:
        func = None
    if func is None:
        # Not reachable by name (e.g. defined in a function): fall back to Chalice's map.
        func = app.handler_map.get(registration.name)
    return func


@dataclass
class Invocation:
    """One handler invocation, kept in the gateway's log for tests."""

    route_key: str
    connection_id: str
    event: dict[str, Any]
    result: Any = None
    error: str | None = None
    timed_out: bool = False
    duration_ms: float = 0.0
    finished_at: float = 0.0


class LambdaRuntime:
    """Calls the app's websocket handlers like the Lambda runtime would."""

    def __init__(self, project: ChaliceProject, app: Any, region: str, timeout_ms: int) -> None:
        self.project = project
        self.app = app
        self.region = region
        self.timeout_ms = timeout_ms
        self.handlers = {key: resolve_handler(app, key) for key in ROUTE_KEYS}

    def has(self, route_key: str) -> bool:
        return self.handlers.get(route_key) is not None

    def invoke(self, route_key: str, event: dict[str, Any]) -> Invocation:
        """Run one handler (in the calling worker thread). Never raises."""
        connection_id = event["requestContext"]["connectionId"]
        record = Invocation(route_key=route_key, connection_id=connection_id, event=event)
        func = self.handlers.get(route_key)
        if func is None:
            record.error = f"no handler for {route_key}"
            return record
        context = LambdaContext(
            self.project.function_name(route_key),
            self.project.lambda_memory_size,
            self.timeout_ms,
            self.region,
        )
        started = time.perf_counter()
        try:
            result = func(event, context)
            # Lambda serialises the return value; what it cannot serialise is an error.
            record.result = json.loads(json.dumps(result))
        except Exception:  # noqa: BLE001 - any handler failure is an invocation error, as on Lambda
            record.error = traceback.format_exc()
            log.error("%s handler failed for %s:\n%s", route_key, connection_id, record.error)
        record.duration_ms = (time.perf_counter() - started) * 1000
        record.finished_at = time.time()
        return record
