"""``make chalice-local``: Chalice's own ``chalice local`` against a running ``make run``.

    python -m local_gateway.chalice_local [--env-file .chalice/local.env] [--port 8002] [...]

``make run`` writes the app's environment to ``.chalice/local.env`` while it runs (its
DynamoDB and SQS endpoints, the table, ``APIGW_MANAGEMENT_ENDPOINT``, the run's own
credentials, ``AUTH_MODE``, and the JWT secret when it has one). Loading that file into the
shell is not enough: ``chalice local`` applies the stage's ``.chalice/config.json`` variables
over the process environment when it imports the app (``CLIFactory.load_chalice_app``), so the
dev stage's ``AUTH_MODE=jwt`` and ``JWT_SECRET_PARAMETER`` won, and ``/health`` asked the real
SSM for the secret (503). Here the running stack's values win over the stage's: the same auth
mode, secret and endpoints as ``make run``'s own REST server, in either auth mode, and nothing
is read from AWS. The file is read, never put on a command line (``ps`` shows those).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

DEFAULT_ENV_FILE = os.path.join(".chalice", "local.env")


def read_local_env(path: str) -> dict[str, str]:
    """The ``KEY=value`` lines ``cli.write_env_file`` writes (values shell-quoted)."""
    env: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            words = shlex.split(line)
            key, sep, value = words[0].partition("=") if len(words) == 1 else ("", "", "")
            if not sep or not key:
                raise ValueError(f"{path}:{number}: expected KEY=VALUE")
            env[key] = value
    return env


def prefer(env: Mapping[str, str]) -> None:
    """Make Chalice apply ``env`` after the stage's config.json variables, so it wins."""
    from chalice.cli.factory import CLIFactory

    load = CLIFactory.load_chalice_app

    def load_chalice_app(
        self: Any,
        environment_variables: MutableMapping[str, str] | None = None,
        validate_feature_flags: bool | None = True,
    ) -> Any:
        merged = {**(environment_variables or {}), **env}
        return load(self, merged, validate_feature_flags)

    CLIFactory.load_chalice_app = load_chalice_app  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local_gateway.chalice_local",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--env-file", default=DEFAULT_ENV_FILE, help="what make run wrote")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--stage", default="dev", help="the Chalice stage (its routes, config)")
    args = parser.parse_args(argv)
    try:
        env = read_local_env(args.env_file)
    except FileNotFoundError:
        print(
            f"{args.env_file} not found: start 'make run' in another shell first",
            file=sys.stderr,
        )
        return 1
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    os.environ.update(env)
    prefer(env)
    from chalice.cli import main as chalice_main

    # No autoreload: Chalice's reloader re-executes sys.argv[0], which would be "chalice".
    sys.argv = ["chalice", "local", "--host", args.host, "--port", str(args.port)]
    sys.argv += ["--stage", args.stage, "--no-autoreload"]
    return int(chalice_main() or 0)


if __name__ == "__main__":
    raise SystemExit(main())
