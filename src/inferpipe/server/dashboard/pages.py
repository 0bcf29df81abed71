"""The dashboard's pages: the single-page app's shell at `/` and `/dashboard`, its static files
under `/dashboard/static/`, the login form, and the API reference (Swagger UI at `/docs`, Redoc
at `/redoc`, both from files vendored under `static/vendor/`, so they work offline). None of them
holds data, so they are served without a key; the data comes from the API, which the session
cookie (or keyless dev) opens."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/dashboard/static"
LOGIN_PATH = "/dashboard/login"
LOGOUT_PATH = "/dashboard/logout"
SHELL_PATHS = frozenset({"/", "/dashboard", "/dashboard/"})


def content_security_policy(*, styles: str = "'self'", workers: str = "'self'") -> str:
    """Everything a page needs is served from here: no CDN, no inline script."""
    return (
        f"default-src 'self'; script-src 'self'; style-src {styles}; worker-src {workers}; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


SECURITY_HEADERS = {
    "Content-Security-Policy": content_security_policy(),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

REDOC_HEADERS = {
    **SECURITY_HEADERS,
    # Redoc's bundle writes two <style> elements as it loads, allowed by their hashes: an empty
    # one (styled-components fills it through the CSSOM) and perfect-scrollbar's rules. Its
    # search runs in a worker it makes from a blob of its own code.
    "Content-Security-Policy": content_security_policy(
        styles="'self' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' "
        "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
        workers="blob:",
    ),
}

router = APIRouter(include_in_schema=False)


def is_public(path: str) -> bool:
    """Paths served without a key: the shell, the static files and the login form."""
    return path in SHELL_PATHS or path == LOGIN_PATH or path.startswith(STATIC_PATH + "/")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/")
@router.get("/dashboard")
async def shell() -> FileResponse:
    """The single-page app; its routes live in the URL's fragment (`#/runs`, `#/run/<id>`)."""
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


@router.get("/docs")
async def swagger_ui() -> FileResponse:
    """The API reference in Swagger UI, over `/openapi.json`, with "Try it out"."""
    return FileResponse(STATIC_DIR / "api-docs.html", headers=SECURITY_HEADERS)


@router.get("/redoc")
async def redoc() -> FileResponse:
    """The API reference in Redoc, over `/openapi.json`."""
    return FileResponse(STATIC_DIR / "redoc.html", headers=REDOC_HEADERS)


@router.get(LOGIN_PATH)
async def login_form(
    next: Annotated[str | None, Query(max_length=2000)] = None,
) -> HTMLResponse:
    return login_page(safe_next(next), None, 200)


def login_page(target: str, error: str | None, status: int) -> HTMLResponse:
    """The login form, with an error message when a login failed."""
    template = (STATIC_DIR / "login.html").read_text(encoding="utf-8")
    message = (
        f'<p class="login-error" role="alert" id="login-error">{html.escape(error)}</p>'
        if error
        else ""
    )
    page = template.replace("{{error}}", message).replace("{{next}}", html.escape(target))
    return HTMLResponse(page, status, headers=SECURITY_HEADERS)


def install(api: FastAPI) -> None:
    """Serve the dashboard from `api` (the routes, and the static files)."""
    api.include_router(router)
    api.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
