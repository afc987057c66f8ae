"""Settings read from the environment once, into a frozen dataclass.

Read lazily (on first use inside a handler): Chalice's test client and the local gateway only
patch environment variables while a handler runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from chalicelib.rate_control import RATE_CONTROLS

if TYPE_CHECKING:  # namespaces.py imports ConfigError from here
    from chalicelib.namespaces import Namespaces

AUTH_MODES = ("jwt", "none")
TRANSPORTS = ("async", "boto3")
# The SQS queue of fan-out continuations, one per stage: its name is CONTINUATION_QUEUE_NAME
# (each stage's environment_variables in .chalice/config.json). Chalice has no per-stage
# decorator argument, so app.py's on_sqs_message reads the name from the environment when it
# is imported (the way a Chalice maintainer suggests in aws/chalice#1385): in Lambda the stage's
# variables are set; ``make chalice-deploy`` (deploy/chalice_deploy.py) sets it for the CLI,
# which subscribes the worker to the queue by this name. Unset, the name below names no queue
# anyone creates, so a plain ``chalice deploy`` fails at the subscription instead of
# consuming another stage's jobs. The packaged stack makes its own queue and points the event
# source mapping at it (deploy/template.py).
CONTINUATION_QUEUE_UNSET = "CONTINUATION_QUEUE_NAME-not-set-see-docs-DEPLOY-md"


def continuation_queue_name(env: Mapping[str, str] | None = None) -> str:
    """The continuation queue's name for app.py's decorator (see above), read and checked
    as ``Settings.continuation_queue_name`` declares it."""
    env = os.environ if env is None else env
    (var,) = [f.metadata["var"] for f in fields(Settings) if f.name == "continuation_queue_name"]
    return str(var.read(env, None) or CONTINUATION_QUEUE_UNSET)


# Signing algorithms we accept for the pinned JWT algorithm. "none" is never allowed.
JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384")
# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output. A shorter shared
# secret can be brute-forced offline from any one token. (RS/ES take a PEM public key, not a secret.)
HMAC_MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_ISS_AUD = {"JWT_ISSUER": "`iss` claim", "JWT_AUDIENCE": "`aud` value"}
GENERATE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""

    @property
    def setting(self) -> str | None:
        """The variable the message names first (e.g. ``JWT_SECRET``): safe to show a caller
        where the message itself (it may quote a parameter name or a value) is not."""
        found = _SETTING_RE.search(str(self))
        return found.group(0) if found else None


_SETTING_RE = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b")

# MANAGEMENT_ENDPOINT_MODE: where the app sends @connections calls for a connection.
# "execute-api": https://{apiId}.execute-api.{region}.amazonaws.com/{stage}, the endpoint the
# management API's own reference names ("The endpoint will be of the form
# https://{api-id}.execute-api.{region}.amazonaws.com/{stage}, or will be the endpoint
# corresponding to your API's custom domain and base path, if applicable": botocore's
# apigatewaymanagementapi service documentation). It answers whatever domain the client
# dialled, because the event's apiId and stage name the API, not the domain.
# "domain": https://{domainName}/{MANAGEMENT_BASE_PATH}, the custom domain's API mapping, for
# APIs whose execute-api endpoint is disabled ("Disable the default endpoint for WebSocket
# APIs", API Gateway developer guide). Not https://{domainName}/{stage}: an API mapping's path
# need not be the stage ("Map API stages to a custom domain name for WebSocket APIs": the
# production stage mapped to wss://api.example.com/orders), so that URL fails with 403.
ENDPOINT_MODES = ("execute-api", "domain")
# An API mapping key: "letters, numbers, and the following characters: $-_.+!*'()", up to
# 300 characters, with "/" between levels ("Map API stages to a custom domain name for
# WebSocket APIs", Restrictions).
_BASE_PATH_RE = re.compile(r"[A-Za-z0-9$\-_.+!*'()]+(?:/[A-Za-z0-9$\-_.+!*'()]+)*")


@dataclass(frozen=True)
class EndpointRule:
    """How a connection's management endpoint is derived from its event (see ENDPOINT_MODES).

    ``region`` is the Lambda's own (``AWS_REGION``, which Lambda sets in every function); the
    API and the function live in the same region under Chalice.
    """

    mode: str = "execute-api"
    region: str | None = None
    base_path: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EndpointRule:
        env = os.environ if env is None else env
        mode = (env.get("MANAGEMENT_ENDPOINT_MODE") or "execute-api").strip().lower()
        if mode not in ENDPOINT_MODES:
            raise ConfigError(
                f"MANAGEMENT_ENDPOINT_MODE must be one of {', '.join(ENDPOINT_MODES)}, got {mode!r}"
            )
        base_path = (env.get("MANAGEMENT_BASE_PATH") or "").strip().strip("/")
        if base_path and (len(base_path) > 300 or not _BASE_PATH_RE.fullmatch(base_path)):
            raise ConfigError(
                "MANAGEMENT_BASE_PATH must be an API mapping path (letters, digits, "
                f"$-_.+!*'() and / between levels, at most 300 characters), got {base_path!r}"
            )
        region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
        return cls(mode=mode, region=region or None, base_path=base_path)


@dataclass(frozen=True)
class Var:
    """How one setting is read: its environment variable, bounds (inclusive, for numbers),
    its allowed values (compared lower-cased), or whether it is a true/false switch
    (``boolean``; implied by a bool default). The default lives in the dataclass field that
    carries this as metadata, so name, default and bounds are declared on one line."""

    env: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    boolean: bool = False
    # For text: a regular expression the whole value must match, and what it describes.
    pattern: tuple[str, str] | None = None

    def read(self, env: Mapping[str, str], default: Any) -> Any:
        raw = env.get(self.env)
        if raw is None or raw.strip() == "":
            return default
        if self.boolean or isinstance(default, bool):
            return _bool(self.env, raw)
        if self.choices:
            value = raw.strip().lower()
            if value not in self.choices:
                raise ConfigError(
                    f"{self.env} must be one of {', '.join(self.choices)}, got {value!r}"
                )
            return value
        if isinstance(default, int):
            return _int(env, self.env, default, int(self.low or 0), int(self.high or 0))
        if isinstance(default, float) or (default is None and self.low is not None):
            return _float(env, self.env, 0.0, self.low, self.high)
        if self.pattern is not None:
            value = raw.strip()
            if not re.fullmatch(self.pattern[0], value):
                raise ConfigError(
                    f"{self.env} must be {self.pattern[1]} ({self.pattern[0]}), got {value!r}"
                )
            return value
        return raw.strip()


def setting(
    env: str,
    default: Any,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    boolean: bool = False,
    pattern: tuple[str, str] | None = None,
) -> Any:
    """A dataclass field read from ``env`` by ``Settings.from_env`` (see ``Var``)."""
    return field(default=default, metadata={"var": Var(env, low, high, choices, boolean, pattern)})


@dataclass(frozen=True)
class Settings:
    """Every setting, declared once: field name, environment variable, default and bounds,
    grouped by concern (docs/CONFIGURATION.md lists them in the same groups). Fields without
    a ``setting(...)`` are read by ``from_env`` itself (required, derived or secret ones)."""

    table_name: str

    # --- who may connect and push -------------------------------------------------------------
    auth_mode: str = setting("AUTH_MODE", "jwt", choices=AUTH_MODES)
    # The secret itself: JWT_SECRET, or the SSM parameter JWT_SECRET_PARAMETER names (read by
    # the ``read_secret`` that wiring.settings_from_env passes).
    jwt_secret: str | None = None
    jwt_algorithm: str = "HS256"  # JWT_ALGORITHM: case-sensitive, checked in from_env
    jwt_issuer: str | None = setting("JWT_ISSUER", None)
    jwt_audience: str | None = setting("JWT_AUDIENCE", None)
    # The longest a token may live (exp - iat): a leaked token is useful for at most this long.
    jwt_max_lifetime_seconds: int = setting("JWT_MAX_LIFETIME_SECONDS", 86400, 60, 30 * 86400)
    admin_role: str = setting("ADMIN_ROLE", "admin")
    # Delivery counts in a direct message's ack: they tell the sender whether and on how many
    # devices the recipient is online. None: by AUTH_MODE (see ``dm_receipts``).
    dm_delivery_receipts: bool | None = setting("DM_DELIVERY_RECEIPTS", None, boolean=True)

    # --- connections and the management API ---------------------------------------------------
    # Connect time + 2 h API Gateway maximum + 5 min margin.
    connection_ttl_seconds: int = setting("CONNECTION_TTL_SECONDS", 7500, 60, 30 * 86400)
    management_endpoint: str | None = None  # APIGW_MANAGEMENT_ENDPOINT, trailing "/" dropped
    endpoint_rule: EndpointRule = field(default_factory=EndpointRule)  # MANAGEMENT_ENDPOINT_*
    max_attempts: int = setting("MANAGEMENT_MAX_ATTEMPTS", 3, 1, 10)
    management_transport: str = setting("MANAGEMENT_TRANSPORT", "async", choices=TRANSPORTS)
    http_connect_timeout: float = setting("HTTP_CONNECT_TIMEOUT", 2.0)
    http_read_timeout: float = setting("HTTP_READ_TIMEOUT", 5.0)

    # --- fan-out --------------------------------------------------------------------------------
    fanout_workers: int = setting("FANOUT_WORKERS", 64, 1, 1024)
    # A fan-out stops starting posts after this long: under API Gateway's 29 s integration
    # timeout, so the sender gets its ack instead of "Endpoint request timed out".
    fanout_deadline_seconds: float = setting("FANOUT_DEADLINE_SECONDS", 25.0, 0.1, 900.0)
    # Posts/s pacing against the account's @connections quota (rate_control.py): "aimd"
    # learns a share from 429s, "off" posts as fast as FANOUT_WORKERS allow. The maximum
    # defaults to AWS's default account quota (10,000 rps); the initial rate (None here) to
    # what FANOUT_WORKERS sustain at ~20 ms a post (3,200/s for 64), under the maximum.
    fanout_rate_control: str = setting("FANOUT_RATE_CONTROL", "aimd", choices=RATE_CONTROLS)
    fanout_initial_rate: float | None = setting("FANOUT_INITIAL_RATE", None, 1.0, 1e6)
    fanout_max_rate: float = setting("FANOUT_MAX_RATE", 10000.0, 1.0, 1e6)
    all_shards: int = setting("ALL_SHARDS", 8, 1, 256)
    # Where a fan-out that reaches its deadline hands the rest of its audience (an SQS queue
    # URL; chalicelib/continuation.py). None: no continuation, the rest is reported failed.
    continuation_queue_url: str | None = None  # CONTINUATION_QUEUE_URL, checked in from_env
    # ``chalice deploy`` cannot put the queue's URL (it holds the account id) in the stage's
    # variables: there the senders look it up by name once per container (sqs:GetQueueUrl).
    # SQS names: up to 80 alphanumerics, hyphens and underscores (CreateQueue's QueueName).
    continuation_queue_name: str | None = setting(
        "CONTINUATION_QUEUE_NAME", None, pattern=(r"[A-Za-z0-9_-]{1,80}", "an SQS queue name")
    )
    # Whether the worker's event source mapping has ReportBatchItemFailures (the packaged
    # stack sets this to true). Chalice 1.34's own mapping (``chalice deploy``) has no
    # FunctionResponseTypes and deletes a batch whose invocation returned, whatever the
    # response says: there a failed job must raise so that SQS delivers it again.
    continuation_partial_batch: bool = setting("CONTINUATION_PARTIAL_BATCH", False)
    # The key continuation jobs are signed with: CONTINUATION_KEY, or the SSM SecureString
    # CONTINUATION_KEY_PARAMETER names (read by the ``read_secret`` wiring passes); None:
    # derived from an HMAC JWT secret (``continuation_guard.job_key``). Checked in from_env.
    continuation_key: str | None = None
    # How long a continuation job is honoured: an older one is refused and dead-lettered.
    continuation_job_ttl_seconds: int = setting("CONTINUATION_JOB_TTL_SECONDS", 900, 60, 14 * 86400)
    # Target ids per continuation message: ~2,000 connection ids (a job carries no endpoints)
    # stay far under SQS's 256 KB message limit.
    continuation_batch: int = setting("CONTINUATION_BATCH", 2000, 1, 2000)

    # --- messages, the log and presence -----------------------------------------------------
    max_text_chars: int = setting("MAX_TEXT_CHARS", 8192, 1, 32768)
    # The message log (resume and history): retention, and how many messages one resume
    # replays per stream before it answers truncated (the client pages the rest with history).
    history_ttl_seconds: int = setting("HISTORY_TTL_SECONDS", 86400, 60, 366 * 86400)
    history_max_replay: int = setting("HISTORY_MAX_REPLAY", 500, 1, 10000)
    # How long a send's clientMsgId is remembered: a retry within it is answered, not re-sent.
    idempotency_ttl_seconds: int = setting("IDEMPOTENCY_TTL_SECONDS", 86400, 60, 366 * 86400)
    # Presence: rooms with more users send no enter/leave events (Pusher's presence channels
    # stop at 100 too); ``members`` lists at most this many users and says truncated.
    presence_max_members: int = setting("PRESENCE_MAX_MEMBERS", 100, 0, 100000)
    presence_max_list: int = setting("PRESENCE_MAX_LIST", 1000, 1, 10000)

    # --- abuse limits (chalicelib/limits.py): per user or connection, so kept in DynamoDB ----
    max_rooms_per_connection: int = setting("MAX_ROOMS_PER_CONNECTION", 50, 1, 1000)
    max_connections_per_user: int = setting("MAX_CONNECTIONS_PER_USER", 10, 1, 100_000)
    max_rooms_per_user: int = setting("MAX_ROOMS_PER_USER", 50, 1, 100_000)
    message_rate: float = setting("MESSAGE_RATE", 10.0, 0.01, 100_000.0)  # frames/s, sustained
    message_burst: int = setting("MESSAGE_BURST", 20, 1, 100_000)  # frames at once after a lull
    # A `leave` takes this many frames' worth of the bucket: join/leave toggling fans a
    # presence event out to the whole room each time (docs/PROTOCOL.md, "Abuse limits").
    leave_frame_cost: int = setting("LEAVE_FRAME_COST", 10, 1, 1000)
    # What one resume/history frame may cost: streams read, messages and bytes replayed.
    replay_max_streams: int = setting("REPLAY_MAX_STREAMS", 52, 1, 100)
    replay_max_messages: int = setting("REPLAY_MAX_MESSAGES", 200, 1, 10000)
    replay_max_bytes: int = setting("REPLAY_MAX_BYTES", 262144, 1024, 16 * 1048576)
    # The user's replay budget (messages, across all its connections and containers).
    replay_rate: float = setting("REPLAY_RATE", 50.0, 0.01, 100_000.0)  # messages/s, sustained
    replay_burst: int = setting("REPLAY_BURST", 1000, 1, 1_000_000)  # messages at once

    # --- back-end events on EventBridge (chalicelib/bus.py) and push devices -----------------
    # The bus events go to (a name, an ARN, or "default"); unset: no events at all.
    event_bus_name: str | None = setting("EVENT_BUS_NAME", None)
    # How much of a message's text "Message Undelivered" carries (a notification's body).
    event_preview_chars: int = setting("EVENT_PREVIEW_CHARS", 200, 0, 65536)
    # How long a registered device token is kept after its last registration (POST /me/devices).
    device_ttl_seconds: int = setting("DEVICE_TTL_SECONDS", 30 * 86400, 3600, 400 * 86400)
    # The SNS platform applications the push notifier (push.py) sends through, per platform;
    # unset: devices of that platform are skipped.
    push_apns_application_arn: str | None = setting("PUSH_APNS_APPLICATION_ARN", None)
    push_apns_sandbox_application_arn: str | None = setting(
        "PUSH_APNS_SANDBOX_APPLICATION_ARN", None
    )
    push_fcm_application_arn: str | None = setting("PUSH_FCM_APPLICATION_ARN", None)
    # --- room permissions (docs/PROTOCOL.md, "Permissions") ------------------------------------
    # ROOM_NAMESPACES: chalicelib/namespaces.json (None here), another .json file of the
    # package, or the document inline; validated by from_env, a bad key names itself.
    namespaces: Namespaces | None = None
    # AUTHORIZER_FUNCTIONS: Chalice name of each authorizer the namespaces use -> its deployed
    # name or ARN (a JSON object; unset: the Chalice names, which the local gateway serves).
    authorizer_functions: Mapping[str, str] = field(default_factory=dict)

    log_level: str = "INFO"  # LOG_LEVEL, upper-cased

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        read_secret: Callable[[str, str], str] | None = None,
    ) -> Settings:
        """Read every setting; ``read_secret(name, variable)`` fetches the secret an SSM
        parameter holds, the one JWT_SECRET_PARAMETER or CONTINUATION_KEY_PARAMETER (the
        ``variable``, for its error messages) names (``wiring.read_secret_parameter``;
        without it such a parameter is a ConfigError)."""
        env = os.environ if env is None else env
        table = env.get("CONNECTIONS_TABLE", "").strip()
        if not table:
            raise ConfigError("CONNECTIONS_TABLE is required (the DynamoDB connections table name)")
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = f.metadata.get("var")
            if var is not None:
                values[f.name] = var.read(env, f.default)
        auth_mode = values["auth_mode"]
        # Lambda sets AWS_LAMBDA_FUNCTION_NAME in every function's environment (docs:
        # https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html, "Defined runtime
        # environment variables"); the local gateway and chalice.test.Client do not set it. Not
        # AWS_EXECUTION_ENV: Chalice itself sets that to "AWS_Lambda aws-chalice/<version>" on
        # import when it is unset, so it is present locally too.
        if auth_mode == "none" and env.get("AWS_LAMBDA_FUNCTION_NAME"):
            raise ConfigError(
                "AUTH_MODE=none is for the local gateway only; deployed functions must use jwt"
            )
        algorithm = env.get("JWT_ALGORITHM", "HS256").strip()
        if algorithm not in JWT_ALGORITHMS:
            raise ConfigError(f"JWT_ALGORITHM must be one of {', '.join(JWT_ALGORITHMS)}")
        if not algorithm.startswith("HS") and not _has_crypto():
            raise ConfigError(
                f"JWT_ALGORITHM={algorithm} needs the 'cryptography' package "
                "(add PyJWT[crypto] to requirements.txt); the default bundle supports HS* only"
            )
        max_rate = values["fanout_max_rate"]
        if values["fanout_initial_rate"] is None:
            # What the pool sustains at ~20 ms a post (see Limits in the README), under the cap.
            values["fanout_initial_rate"] = min(max_rate, values["fanout_workers"] / 0.02)
        initial_rate = values["fanout_initial_rate"]
        if initial_rate > max_rate:
            raise ConfigError(
                f"FANOUT_INITIAL_RATE ({initial_rate:g}) must not exceed FANOUT_MAX_RATE ({max_rate:g})"
            )
        secret = _secret(env, auth_mode, algorithm, read_secret)
        if auth_mode == "jwt":
            _require_issuer_and_audience(values)
        from chalicelib.authorizer import function_names
        from chalicelib.namespaces import load as load_namespaces

        namespaces = load_namespaces(env.get("ROOM_NAMESPACES"))
        return cls(
            namespaces=namespaces,
            authorizer_functions=function_names(
                env.get("AUTHORIZER_FUNCTIONS"), namespaces.authorizers()
            ),
            table_name=table,
            jwt_secret=secret,
            jwt_algorithm=algorithm,
            management_endpoint=(env.get("APIGW_MANAGEMENT_ENDPOINT") or "").rstrip("/") or None,
            endpoint_rule=EndpointRule.from_env(env),
            continuation_queue_url=_queue_url(env),
            continuation_key=_continuation_key(env, auth_mode, algorithm, read_secret),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            **values,
        )

    @property
    def dm_receipts(self) -> bool:
        """Whether a DM's ack carries delivery counts. Off by default with AUTH_MODE=jwt (an
        online oracle: any user could probe any user id); on by default with AUTH_MODE=none,
        where anyone may connect as any user id and read their stream, so the counts reveal
        nothing new and the local demo shows them."""
        if self.dm_delivery_receipts is None:
            return self.auth_mode == "none"
        return self.dm_delivery_receipts


def _secret(
    env: Mapping[str, str],
    auth_mode: str,
    algorithm: str,
    read_secret: Callable[[str, str], str] | None,
) -> str | None:
    """JWT_SECRET, else the SSM parameter JWT_SECRET_PARAMETER names; checked for length."""
    secret = env.get("JWT_SECRET") or None
    source = "JWT_SECRET"
    parameter = (env.get("JWT_SECRET_PARAMETER") or "").strip()
    if auth_mode == "jwt" and not secret and parameter:
        if read_secret is None:
            raise ConfigError("JWT_SECRET_PARAMETER is set but nothing here reads SSM")
        secret = read_secret(parameter, "JWT_SECRET_PARAMETER")
        source = f"the secret in JWT_SECRET_PARAMETER {parameter!r}"
    if auth_mode == "jwt" and not secret:
        raise ConfigError(
            "AUTH_MODE=jwt needs JWT_SECRET (an HMAC secret or a PEM public key) "
            "or JWT_SECRET_PARAMETER (the name of an SSM SecureString holding it)"
        )
    if auth_mode == "jwt" and secret and algorithm in HMAC_MIN_SECRET_BYTES:
        _check_secret_length(secret, algorithm, source)
    return secret


def _queue_url(env: Mapping[str, str]) -> str | None:
    url = (env.get("CONTINUATION_QUEUE_URL") or "").strip()
    if url and not re.fullmatch(r"https?://[^/\s]+/[0-9]{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?", url):
        raise ConfigError(
            "CONTINUATION_QUEUE_URL must be an SQS queue URL like "
            f"https://sqs.us-east-1.amazonaws.com/123456789012/name, got {url!r}"
        )
    return url or None


def _require_issuer_and_audience(values: Mapping[str, Any]) -> None:
    """AUTH_MODE=jwt: without JWT_ISSUER and JWT_AUDIENCE a token minted for another service
    with the same secret would be accepted."""
    for name, field_name, claim in (
        ("JWT_ISSUER", "jwt_issuer", "`iss` claim"),
        ("JWT_AUDIENCE", "jwt_audience", "`aud` value"),
    ):
        if not values[field_name]:
            raise ConfigError(
                f"{name} is required with AUTH_MODE=jwt (the {claim} every token must "
                "carry): without it a token minted for another service with the same secret "
                "would be accepted"
            )


def _continuation_key(
    env: Mapping[str, str],
    auth_mode: str,
    algorithm: str,
    read_secret: Callable[[str, str], str] | None,
) -> str | None:
    """CONTINUATION_KEY, or the SecureString CONTINUATION_KEY_PARAMETER names. Without either,
    a stage with a continuation queue needs an HMAC JWT secret to derive the key from."""
    key = env.get("CONTINUATION_KEY") or None
    source = "CONTINUATION_KEY"
    parameter = (env.get("CONTINUATION_KEY_PARAMETER") or "").strip()
    if not key and parameter:
        if read_secret is None:
            raise ConfigError("CONTINUATION_KEY_PARAMETER is set but nothing here reads SSM")
        key = read_secret(parameter, "CONTINUATION_KEY_PARAMETER")
        source = f"the key in CONTINUATION_KEY_PARAMETER {parameter!r}"
    if key:
        if len(key.encode("utf-8")) < 32:
            raise ConfigError(
                f"{source} must be at least 32 bytes; generate one with `{GENERATE_SECRET}`"
            )
        return key
    queue = _queue_url(env) or (env.get("CONTINUATION_QUEUE_NAME") or "").strip()
    if queue and not (auth_mode == "jwt" and algorithm.startswith("HS")):
        raise ConfigError(
            "CONTINUATION_KEY (or CONTINUATION_KEY_PARAMETER) is required with "
            "CONTINUATION_QUEUE_URL or CONTINUATION_QUEUE_NAME unless AUTH_MODE=jwt with an HS* secret to derive it from: "
            "continuation jobs are signed with it"
        )
    return None


def _check_secret_length(secret: str, algorithm: str, source: str) -> None:
    size = len(secret.encode("utf-8"))
    minimum = HMAC_MIN_SECRET_BYTES[algorithm]
    if size < minimum:
        raise ConfigError(
            f"{source} must be at least {minimum} bytes for {algorithm} (got {size}); "
            f"generate one with `{GENERATE_SECRET}`"
        )


def _has_crypto() -> bool:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float | None = None,
    high: float | None = None,
) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if low is not None and high is not None and not low <= value <= high:
        # "not low <= value" also refuses nan, which compares false with everything.
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value
