"""Command line: ``python -m local_gateway [flags]`` runs the local stack until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import shlex
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

from local_gateway.emulator import LocalGateway
from local_gateway.faults import FaultConfig
from local_gateway.quotas import Quotas
from local_gateway.token_bucket import default_burst


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


# Names whose values must not appear on a command line, where every local user sees them (ps).
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|KEY", re.IGNORECASE)


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    if SECRET_NAME.search(key):
        raise argparse.ArgumentTypeError(
            f"{key} looks like a secret, and the command line is visible to every local user "
            f"(ps); use --env-file PATH (KEY=VALUE lines) or --env-from-environ {key}"
        )
    return key, value


# A DNS name of letters, digits and hyphens (the custom domain names API Gateway accepts).
_DOMAIN_RE = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*")
# An API mapping path: "letters, numbers, and the following characters: $-_.+!*'()", at most
# 300 characters, "/" between levels ("Map API stages to a custom domain name for WebSocket
# APIs", API Gateway developer guide, Restrictions).
_BASE_PATH_RE = re.compile(r"[A-Za-z0-9$\-_.+!*'()]+(?:/[A-Za-z0-9$\-_.+!*'()]+)*")


def _domain(text: str) -> str:
    name = text.strip().lower().rstrip(".")
    if not _DOMAIN_RE.fullmatch(name):
        raise argparse.ArgumentTypeError(f"not a domain name: {text!r}")
    return name


def _base_path(text: str) -> str:
    path = text.strip().strip("/")
    if path and (len(path) > 300 or not _BASE_PATH_RE.fullmatch(path)):
        raise argparse.ArgumentTypeError(
            "an API mapping path: letters, digits, $-_.+!*'() and / between levels, "
            "at most 300 characters"
        )
    return path


def read_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments skipped, no quoting or expansion."""
    env: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{path}:{number}: expected KEY=VALUE")
            env[key.strip()] = value
    return env


def app_environment(args: argparse.Namespace) -> dict[str, str]:
    """The app's extra environment: the env file, then copied variables, then ``--env``."""
    env = read_env_file(args.env_file) if args.env_file else {}
    for name in args.env_from_environ:
        if name not in os.environ:
            raise ValueError(f"--env-from-environ {name}: not set in this environment")
        env[name] = os.environ[name]
    env.update(args.env)
    for name in args.generate_secret:
        # A fresh random value for this run only (never on a command line, never written to
        # the repo); a value from the env file or the environment wins.
        env.setdefault(name, secrets.token_urlsafe(48))
    return env


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local_gateway",
        description="Run a Chalice app locally behind an emulation of API Gateway: the WebSocket API "
        "(with its @connections management API on the same port), the REST API "
        "(Chalice's local server) and an embedded DynamoDB.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("project")
    g.add_argument(
        "--project-dir",
        default=".",
        help="Chalice project dir (with app.py and .chalice/config.json)",
    )
    g.add_argument(
        "--stage", default="dev", help="chalice stage whose environment_variables are used"
    )
    g.add_argument(
        "--env",
        action="append",
        type=_env_pair,
        default=[],
        metavar="KEY=VALUE",
        help="extra environment variable for the app (repeatable; wins over config.json); "
        "names that look secret (*SECRET*, *TOKEN*, *PASSWORD*, *KEY*) are refused: "
        "use --env-file or --env-from-environ for those",
    )
    g.add_argument(
        "--env-file",
        default=None,
        metavar="PATH",
        help="KEY=VALUE lines for the app's environment (# comments); for secrets",
    )
    g.add_argument(
        "--generate-secret",
        action="append",
        default=[],
        metavar="NAME",
        help="give the app a random value for NAME for this run, unless the env file or "
        "--env-from-environ sets it (repeatable; make run: CONTINUATION_KEY, the key the "
        "local continuation jobs are signed with)",
    )
    g.add_argument(
        "--env-from-environ",
        action="append",
        default=[],
        metavar="NAME",
        help="copy variable NAME from this process's environment to the app's (repeatable)",
    )
    g.add_argument("--auth-mode", default=None, help="override the AUTH_MODE environment variable")
    g.add_argument(
        "--region", default=None, help="AWS region for the app (default: $AWS_REGION or us-east-1)"
    )
    g = p.add_argument_group("network")
    g.add_argument("--host", default="127.0.0.1", help="interface to bind")
    g.add_argument(
        "--port", type=int, default=8000, help="REST API port (Chalice local server); 0 = any free"
    )
    g.add_argument(
        "--ws-port", type=int, default=8001, help="WebSocket + management API port; 0 = any free"
    )
    g.add_argument("--no-rest", action="store_true", help="do not start the REST API server")
    g.add_argument(
        "--custom-domain",
        type=_domain,
        default=None,
        metavar="NAME",
        help="emulate a custom domain name mapped to the stage: events carry it as domainName "
        "and @connections requests with this Host are served under --base-path only",
    )
    g.add_argument(
        "--base-path",
        type=_base_path,
        default=None,
        metavar="P",
        help="the custom domain's API mapping path, e.g. v1 (default: none, the domain's root, "
        "as for an API mapping without a path)",
    )
    g.add_argument(
        "--write-env-file",
        default=None,
        metavar="PATH",
        help="write the app's environment here while running (for `chalice local`; "
        "`make run` uses .chalice/local.env); removed on exit",
    )
    g.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser Origin allowed to open a WebSocket, besides the REST server's own "
        "(repeatable; '*' = any); clients sending no Origin are always allowed",
    )
    g.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="Host header value accepted on both ports (WebSocket and REST) besides the bound "
        "address, 127.0.0.1 and localhost "
        "(repeatable; '*' = any); others are refused with 403 (DNS rebinding)",
    )
    g.add_argument(
        "--max-sockets",
        type=int,
        default=4096,
        help="open client sockets at most; beyond, the longest-silent one or the new one is closed",
    )
    g.add_argument(
        "--head-timeout",
        type=float,
        default=10.0,
        help="seconds for a client to send its request head (slowloris)",
    )
    g.add_argument(
        "--keepalive-timeout",
        type=float,
        default=5.0,
        help="seconds an idle keep-alive HTTP connection stays open",
    )
    g = p.add_argument_group("sqs (the app's on_sqs_message handlers)")
    g.add_argument(
        "--queue-url-env",
        default=None,
        metavar="NAME",
        help="set the app's environment variable NAME to its SQS handler's queue URL "
        "(make run: CONTINUATION_QUEUE_URL, so fan-outs past their deadline continue)",
    )
    g.add_argument(
        "--queue-visibility-timeout",
        type=int,
        default=360,
        metavar="S",
        help="visibility timeout of the embedded queues (deployed: 6x the worker's 60 s)",
    )
    g.add_argument(
        "--queue-max-receives",
        type=int,
        default=5,
        metavar="N",
        help="receives before a job moves to the queue's dead-letter queue <queue>-dlq",
    )
    g = p.add_argument_group("dynamodb")
    g.add_argument(
        "--schema",
        default=None,
        help="table schema JSON (CreateTable keys + TimeToLiveAttribute; '_' keys ignored); "
        "default: chalicelib/schema.json if present",
    )
    g.add_argument(
        "--table-env",
        default="CONNECTIONS_TABLE",
        help="stage environment variable holding the table name",
    )
    g.add_argument(
        "--dynamodb-endpoint",
        default=None,
        help="use this DynamoDB endpoint instead of the embedded one (table still created)",
    )
    g.add_argument(
        "--dynamodb-latency-ms",
        type=float,
        default=0.0,
        help="hold every embedded-DynamoDB call this long (AWS-like round trips, e.g. 5)",
    )
    g = p.add_argument_group("API Gateway limits")
    g.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="seconds without frames before closing (1001)",
    )
    g.add_argument(
        "--max-duration",
        type=float,
        default=7200.0,
        help="maximum connection lifetime in seconds (1001)",
    )
    g.add_argument(
        "--integration-timeout", type=float, default=29.0, help="handler timeout in seconds"
    )
    g.add_argument(
        "--send-buffer-limit",
        type=int,
        default=1024 * 1024,
        help="bytes queued to a non-reading client before POST answers 429",
    )
    g.add_argument(
        "--account-rps",
        type=_positive,
        default=None,
        help="account quota over all @connections calls (token bucket, 429 past it; AWS: 10000); "
        "default: unlimited",
    )
    g.add_argument(
        "--account-burst",
        type=_positive,
        default=None,
        help="the quota's burst (bucket size; AWS: 5000); default: half of --account-rps",
    )
    g.add_argument(
        "--workers", type=int, default=64, help="handler thread pool size (concurrent Lambdas)"
    )
    g = p.add_argument_group("fault injection (@connections)")
    g.add_argument(
        "--latency-ms", type=float, default=0.0, help="added latency on every @connections call"
    )
    g.add_argument(
        "--throttle-rate",
        type=_rate,
        default=0.0,
        help="share of POSTs answered 429 LimitExceededException",
    )
    g.add_argument(
        "--error-rate",
        type=_rate,
        default=0.0,
        help="share of POSTs answered 500 InternalServerErrorException",
    )
    g.add_argument(
        "--fault-seed", type=int, default=None, help="seed for the fault RNG (reproducible runs)"
    )
    g.add_argument(
        "--drop-disconnect-rate",
        type=_rate,
        default=0.0,
        help="share of closed connections whose $disconnect is not run (AWS: best effort); "
        "seeded by --fault-seed",
    )
    g = p.add_argument_group("back-end events (EventBridge, embedded)")
    g.add_argument(
        "--no-events",
        action="store_true",
        help="do not create the embedded event bus: the app publishes no events",
    )
    g.add_argument("--event-bus", default="switchboard-local", help="the bus the app publishes to")
    g.add_argument(
        "--event-rules",
        default=None,
        help="rules file (default: the project's deploy/event_rules.json, if any)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def banner(gateway: LocalGateway) -> str:
    urls = gateway.urls
    assert urls is not None
    auth = gateway.environment.get("AUTH_MODE", "(not set)")
    faults = gateway.faults.config
    lines = [
        "",
        "  {} local gateway (chalice stage {!r}, API stage {!r})".format(
            gateway.project.app_name if gateway.project else "chalice",
            gateway.chalice_stage,
            gateway.stage,
        ),
        "",
        f"  WebSocket API   {urls.websocket}",
        f"  @connections    {urls.management}/@connections/{{connectionId}}",
        "  REST API        %s" % (urls.rest or "(disabled)"),
        *([f"  Demo page       {urls.rest}/"] if urls.rest else []),
        "  DynamoDB        {}{}{}".format(
            urls.dynamodb,
            f"  table {gateway.table_name}" if gateway.table_name else "",
            f"  +{gateway.dynamodb_latency_ms:g} ms per call"
            if gateway.dynamodb_latency_ms
            else "",
        ),
        f"  AUTH_MODE       {auth}",
    ]
    events = gateway.local_events
    if events is not None:
        ws_http = urls.websocket.replace("ws://", "http://", 1).rsplit("/", 1)[0]
        targets = ", ".join(f"{r['name']} -> {r['function']}" for r in events.rules)
        lines += [
            f"  Events          {ws_http}/events  (EventBridge bus {events.bus_name}"
            + (f"; rules: {targets})" if targets else ")"),
        ]
    if gateway.queue_url_env and gateway.queue_url_env in gateway.environment:
        lines.insert(
            -1,
            f"  SQS queue       {gateway.environment[gateway.queue_url_env]}"
            f"  ({gateway.queue_url_env}; dead letters: <queue>-dlq)",
        )
    if gateway.custom_domain:
        mapped = "/".join(filter(None, [gateway.custom_domain, gateway.base_path]))
        lines.insert(
            lines.index(f"  @connections    {urls.management}/@connections/{{connectionId}}") + 1,
            f"  custom domain   {mapped}/@connections/{{connectionId}} (Host: {gateway.custom_domain})",
        )
    if auth.lower() in ("none", "off", "false", "0"):
        lines += [
            "",
            "  !!! AUTHENTICATION IS OFF: anyone who can reach these ports may connect as any",
            "  !!! user and broadcast. Local use only; deployed stages use AUTH_MODE=jwt.",
            "  !!! Room permissions: capability and admin rules allow everyone (private:,",
            "  !!! announce: are open); authorizer rules still ask the app's function.",
        ]
    if gateway.limits.account_rps is not None:
        burst = gateway.limits.account_burst or default_burst(gateway.limits.account_rps)
        lines.append(f"  account quota   {gateway.limits.account_rps:g} rps, burst {burst:g}")
    if faults.active:
        lines.append(
            f"  faults          latency {faults.latency_ms:g}ms, 429 rate {faults.throttle_rate:g}, 500 rate {faults.error_rate:g}, $disconnect drop rate {faults.drop_disconnect_rate:g}, seed {faults.seed}"
        )
    lines += [
        "",
        f"  Connect:  python -m websockets '{urls.websocket}?userId=u_123'",
        "",
        "  Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def write_env_file(path: str, env: Mapping[str, str]) -> None:
    """The app's environment as shell assignments (``set -a; . PATH`` loads it), readable by
    the owner only: it holds the gateway's dummy credentials and any ``--env`` secret."""
    lines = [
        "# Written by python -m local_gateway (make run) while it runs; removed when it stops.",
        "# Load it for chalice local: set -a; . " + shlex.quote(path) + "; set +a",
        *(f"{key}={shlex.quote(value)}" for key, value in sorted(env.items())),
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.base_path is not None and not args.custom_domain:
        parser.error("--base-path needs --custom-domain")
    if args.account_burst is not None and (args.account_rps is None or args.account_burst < 1):
        parser.error("--account-burst needs --account-rps and must be at least 1")
    if args.dynamodb_latency_ms < 0:
        parser.error("--dynamodb-latency-ms must be >= 0")
    if args.dynamodb_latency_ms and args.dynamodb_endpoint:
        parser.error("--dynamodb-latency-ms applies to the embedded DynamoDB only")
    try:
        env = app_environment(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # botocore/urllib3 chatter drowns the connection log at INFO.
    for noisy in ("botocore", "urllib3", "werkzeug", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    gateway = LocalGateway(
        args.project_dir,
        chalice_stage=args.stage,
        host=args.host,
        ws_port=args.ws_port,
        rest_port=None if args.no_rest else args.port,
        schema_path=args.schema,
        table_env=args.table_env,
        dynamodb_endpoint=args.dynamodb_endpoint,
        dynamodb_latency_ms=args.dynamodb_latency_ms,
        region=args.region,
        auth_mode=args.auth_mode,
        env=env,
        limits=Quotas(
            idle_timeout=args.idle_timeout,
            max_duration=args.max_duration,
            integration_timeout=args.integration_timeout,
            send_buffer_limit=args.send_buffer_limit,
            account_rps=args.account_rps,
            account_burst=args.account_burst,
            head_timeout=args.head_timeout,
            keepalive_timeout=args.keepalive_timeout,
            max_sockets=args.max_sockets,
        ),
        allowed_origins=args.allowed_origin,
        allowed_hosts=args.allowed_host,
        workers=args.workers,
        faults=FaultConfig(
            latency_ms=args.latency_ms,
            throttle_rate=args.throttle_rate,
            error_rate=args.error_rate,
            seed=args.fault_seed,
            drop_disconnect_rate=args.drop_disconnect_rate,
        ),
        custom_domain=args.custom_domain,
        base_path=args.base_path or "",
        events=not args.no_events,
        event_bus=args.event_bus,
        event_rules=args.event_rules,
        queue_url_env=args.queue_url_env,
        queue_visibility_timeout=args.queue_visibility_timeout,
        queue_max_receives=args.queue_max_receives,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        gateway.start()
    except Exception as exc:
        print(f"local gateway failed to start: {exc}", file=sys.stderr)
        logging.getLogger("local_gateway").debug("start failure", exc_info=True)
        return 1
    if args.write_env_file:
        write_env_file(args.write_env_file, gateway.environment)
    print(banner(gateway), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print("\n  shutting down...", flush=True)
        gateway.stop()
        if args.write_env_file and os.path.exists(args.write_env_file):
            # A stale file would point chalice local at a DynamoDB that is gone.
            os.remove(args.write_env_file)
    return 0
