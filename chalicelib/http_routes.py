"""The HTTP routes' decorator: auth, then the route body, with every error answered through the
one mapping (``errors.http_answer``). Kept out of app.py, which stays wiring."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from chalice.app import Chalice, Response

from chalicelib import errors

# A route body gets the switchboard, the caller (an admin, a user, or None on a public route)
# and the path parameters, and returns the JSON answer.
RouteBody = Callable[..., Any]
Decorate = Callable[[RouteBody], Callable[..., Response]]


def decorator(app: Chalice, get_switchboard: Callable[[], Any]) -> Callable[..., Decorate]:
    """``http_route(admin=True, status=200, user=False, query=())`` for ``app``'s routes."""

    def http_route(
        admin: bool = True, status: int = 200, user: bool = False, query: tuple[str, ...] = ()
    ) -> Decorate:
        """Run a route body with auth; any error is answered by ``errors.http_answer``.

        ``admin`` routes need ``Authorization: Bearer <token>`` with the admin role; ``user``
        routes (``/me/...``) the user's own token, any role (``?userId=`` without auth). A
        ``status`` of 204 answers with an empty body. Path parameters may arrive
        percent-encoded (connection ids end in "="); ids and room names never contain "%", so
        decoding an already decoded one changes nothing.

        ``query`` names the query parameters the route reads (a user route also reads
        ``userId``); any other is a 400, as the OpenAPI document promises: a misspelled
        ``cursor`` must not silently answer from the start.
        """
        allowed = (*query, "userId") if user else query

        def decorate(body: RouteBody) -> Callable[..., Response]:
            @functools.wraps(body)
            def route(**params: str) -> Response:
                try:
                    switchboard = get_switchboard()
                    caller = None
                    request: Any = app.current_request
                    headers = request.headers
                    given = request.query_params or {}
                    if user:
                        local_user = given.get("userId")
                        caller = switchboard.authorize_user(
                            headers.get("authorization"), local_user
                        )
                    elif admin:
                        caller = switchboard.authorize_http(headers.get("authorization"))
                    errors.reject_unknown_query(given, allowed)
                    path = {k: unquote(v) for k, v in params.items()}
                    answer = body(switchboard, caller, **path)
                except Exception as exc:  # noqa: BLE001 - one mapping, never a stack trace
                    error = errors.http_answer(exc)
                    return Response(body=error.body, status_code=error.status)
                if status == 204:
                    return Response(body="", status_code=204)
                return Response(
                    body=answer, status_code=status, headers={"Content-Type": "application/json"}
                )

            return route

        return decorate

    return http_route
