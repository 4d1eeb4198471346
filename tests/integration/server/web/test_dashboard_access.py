"""Who gets into the dashboard: token logins, signed cookies, CSRF on every form, the headers
every response carries, and the loopback guards when authentication is off. In-process
jq-server on a real PostgreSQL, spoken to over HTTP."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from support.auth import Tokens
from support.processes import free_port
from support.server_harness import running_server
from support.server_harness import test_settings as settings_for

from jobq.domain.errors import ListenError
from jobq.domain.scopes import Scope
from jobq.server.app import ServerApp
from jobq.server.listeners import listener_problems
from jobq.server.web.security import CONTENT_SECURITY_POLICY

SECRET = "s3cret-" * 6


@asynccontextmanager
async def dashboard(
    dsn: str, tokens: Tokens | None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    settings: dict[str, Any] = {
        "dashboard.port": free_port(),
        "dashboard.session_secret": SECRET,
        **overrides,
    }
    if tokens is not None:
        settings["auth.tokens"] = tokens.entries()
    async with running_server(dsn, settings) as (app, _):
        base = f"http://127.0.0.1:{app.dashboard_port}"
        async with httpx.AsyncClient(base_url=base, follow_redirects=False) as http:
            yield http


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def log_in(http: httpx.AsyncClient, token: str, next_path: str = "/") -> httpx.Response:
    form = await http.get("/login", params={"next": next_path})
    assert form.status_code == 200
    return await http.post(
        "/login", data={"csrf_token": csrf_of(form.text), "token": token, "next": next_path}
    )


async def test_pages_need_a_login_and_a_token_logs_in_with_a_strict_cookie(db_dsn: str) -> None:
    tokens = Tokens.new()
    async with dashboard(db_dsn, tokens) as http:
        first = await http.get("/queues?x=1")
        assert first.status_code == 303
        assert first.headers["location"] == "/login?next=%2Fqueues%3Fx%3D1"
        answer = await log_in(http, tokens.by_scope[Scope.READ], "/queues?x=1")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/queues?x=1"
        cookie = answer.headers["set-cookie"]
        assert "jq_session=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert tokens.by_scope[Scope.READ] not in cookie  # the token itself never leaves
        page = await http.get("/")
        assert page.status_code == 200
        assert "token:read" in page.text


async def test_a_wrong_token_or_a_form_without_its_csrf_token_logs_nobody_in(
    db_dsn: str,
) -> None:
    tokens = Tokens.new()
    async with dashboard(db_dsn, tokens) as http:
        wrong = await log_in(http, "not-a-token")
        assert wrong.status_code == 401
        assert "not one of this server&#39;s tokens" in wrong.text
        assert (
            "jq_session" not in wrong.headers.get("set-cookie", "")
            or "token:" not in (await http.get("/")).text
        )
        form = await http.get("/login")
        forged = await http.post(
            "/login", data={"csrf_token": "0" * 64, "token": tokens.by_scope[Scope.ADMIN]}
        )
        assert forged.status_code == 403
        assert form.status_code == 200
        # With no cookie at all, the form cannot be valid: back to the form.
        async with httpx.AsyncClient(base_url=str(http.base_url)) as stranger:
            blind = await stranger.post(
                "/login", data={"csrf_token": "0" * 64, "token": tokens.by_scope[Scope.ADMIN]}
            )
            assert blind.status_code == 303
            assert blind.headers["location"] == "/login"
        assert (await http.get("/")).status_code == 303  # still nobody


async def test_after_a_login_only_local_paths_are_followed(db_dsn: str) -> None:
    tokens = Tokens.new()
    async with dashboard(db_dsn, tokens) as http:
        for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "jobs"):
            answer = await log_in(http, tokens.by_scope[Scope.READ], target)
            assert answer.status_code == 303
            assert answer.headers["location"] == "/", target


async def test_logout_needs_its_csrf_token_and_ends_the_session(db_dsn: str) -> None:
    tokens = Tokens.new()
    async with dashboard(db_dsn, tokens) as http:
        await log_in(http, tokens.by_scope[Scope.READ])
        page = await http.get("/")
        refused = await http.post("/logout", data={"csrf_token": "f" * 64})
        assert refused.status_code == 403
        assert (await http.get("/")).status_code == 200
        out = await http.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert (await http.get("/")).status_code == 303


async def test_a_token_removed_from_the_configuration_ends_its_logins(db_dsn: str) -> None:
    tokens = Tokens.new()
    port = free_port()
    async with dashboard(db_dsn, tokens, **{"dashboard.port": port}) as http:
        await log_in(http, tokens.by_scope[Scope.READ])
        assert (await http.get("/")).status_code == 200
        cookie = http.cookies["jq_session"]
    fewer = Tokens({Scope.ADMIN: tokens.by_scope[Scope.ADMIN]}, tokens.everything)
    async with dashboard(db_dsn, fewer, **{"dashboard.port": port}) as http:
        http.cookies.set("jq_session", cookie)
        assert (await http.get("/")).status_code == 303  # same key, but the token is gone


async def test_every_response_carries_the_security_headers(db_dsn: str) -> None:
    tokens = Tokens.new()
    async with dashboard(db_dsn, tokens) as http:
        for path in ("/login", "/", "/static/jobq.css", "/no-such-page"):
            answer = await http.get(path)
            assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
            assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
            assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert "server" not in answer.headers
        assert (await http.get("/login")).headers["cache-control"] == "no-store"
        assert "max-age" in (await http.get("/static/jobq.css")).headers["cache-control"]
        missing = await http.get("/no-such-page")
        assert missing.status_code == 404
        assert "Traceback" not in missing.text


async def test_without_authentication_only_this_machine_may_use_it(db_dsn: str) -> None:
    async with dashboard(db_dsn, None) as http:
        assert (await http.get("/login")).headers["location"] == "/"  # nothing to log in to
        page = await http.get("/")
        assert page.status_code == 200
        assert "anonymous" in page.text
        rebound = await http.get("/", headers={"host": "attacker.example"})
        assert rebound.status_code == 421
        assert (await http.get("/", headers={"host": "localhost:1"})).status_code == 200


def test_a_dashboard_on_the_network_needs_authentication() -> None:
    exposed = settings_for(
        "postgresql:///x", **{"dashboard.port": 8000, "dashboard.host": "0.0.0.0"}
    )
    [problem] = listener_problems(exposed)
    assert "dashboard.host is 0.0.0.0" in problem
    loopback = settings_for("postgresql:///x", **{"dashboard.port": 8000})
    assert listener_problems(loopback) == []
    tokens = Tokens.new()
    authenticated = settings_for(
        "postgresql:///x",
        **{"dashboard.port": 8000, "dashboard.host": "0.0.0.0", "auth.tokens": tokens.entries()},
    )
    assert listener_problems(authenticated) == []


async def test_a_taken_port_fails_start_up_with_a_clear_message(db_dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        app = ServerApp(settings_for(db_dsn, **{"dashboard.port": port}))
        try:
            with pytest.raises(ListenError, match=r"dashboard\.port.*address in use"):
                await app.start()
        finally:
            await app.stop()


async def test_a_form_posted_after_the_login_ended_leads_back_to_its_page(db_dsn: str) -> None:
    tokens = Tokens.new()
    async with dashboard(db_dsn, tokens) as http:
        base = str(http.base_url).rstrip("/")
        answer = await http.post(
            "/queues/pause",
            data={"csrf_token": "0" * 64},
            headers={"referer": f"{base}/queues?x=1"},
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=%2Fqueues%3Fx%3D1"
        foreign = await http.post(
            "/queues/pause",
            data={"csrf_token": "0" * 64},
            headers={"referer": "https://evil.example/queues"},
        )
        assert foreign.headers["location"] == "/login?next=%2F"
