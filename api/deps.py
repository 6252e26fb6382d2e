"""Resources the routes depend on: the protocols they must satisfy and `Annotated` aliases.

`create_app` stores the injected objects on `app.state`; routes receive them through the aliases
below (`LiveDep`, `StoreDep`, ...), so tests swap any of them by building the app with fakes.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Awaitable, Callable, Protocol

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from api.caching import RenderedBodies
from api.exposition import MetricsExposition
from monitor.settings import Settings
from monitor.stats import ModelLive
from monitor.store import Store


class ModelInfo(Protocol):
    """What the API reads from a catalog model (`monitor.catalog.ModelConfig` satisfies it)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


class LiveView(Protocol):
    """In-memory live figures (`monitor.live.LiveFigures`). Never queries history."""

    def models(self) -> list[tuple[ModelInfo, ModelLive]]:
        """Every catalog model with its figures, in catalog order."""

    def model(self, model_id: str) -> ModelLive | None: ...

    def providers(self, model_id: str) -> tuple[str, ...] | None:
        """Configured providers of the model, or None when the model is unknown."""


class WindowedView(Protocol):
    """Figures of any (model, window, profile) (`monitor.windows.WindowFigures`); window
    lengths in seconds, None for the defaults (the live window, each endpoint's profile)."""

    def cached(self, model_id: str, window_s: float | None = None, input_tokens: int | None = None) -> ModelLive | None:
        """The figures if at hand without I/O, else None (also for an unknown model)."""

    async def model(self, model_id: str, window_s: float | None = None, input_tokens: int | None = None) -> ModelLive | None:
        """The figures; None for an unknown model."""

    async def models(self, window_s: float | None = None, input_tokens: int | None = None) -> list[tuple[ModelInfo, ModelLive]]:
        """Every catalog model with its figures, in catalog order."""


class DefaultWindows:
    """A WindowedView that has the default figures only (an app built over a bare LiveView):
    asking for another window or profile is 503."""

    def __init__(self, live: LiveView) -> None:
        self._live = live

    def cached(self, model_id: str, window_s: float | None = None, input_tokens: int | None = None) -> ModelLive | None:
        figures = self._live.model(model_id)
        return figures if figures is not None and self._is_default(figures, window_s, input_tokens) else None

    async def model(self, model_id: str, window_s: float | None = None, input_tokens: int | None = None) -> ModelLive | None:
        figures = self._live.model(model_id)
        if figures is not None and not self._is_default(figures, window_s, input_tokens):
            raise self._refusal()
        return figures

    async def models(self, window_s: float | None = None, input_tokens: int | None = None) -> list[tuple[ModelInfo, ModelLive]]:
        entries = self._live.models()
        if any(not self._is_default(figures, window_s, input_tokens) for _, figures in entries):
            raise self._refusal()
        return entries

    @staticmethod
    def _is_default(figures: ModelLive, window_s: float | None, input_tokens: int | None) -> bool:
        return window_s in (None, figures.window_s) and input_tokens is None

    @staticmethod
    def _refusal() -> HTTPException:
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "only the default window and profile are served here")


def secret_of(token: SecretStr | None) -> str | None:
    """The value of a configured token, or None when it is unset or empty (the feature is off)."""
    return (token.get_secret_value() if token is not None else None) or None


class AdminHooks(Protocol):
    """Operations behind the admin routes, provided by the running service."""

    async def probe_now(self, model_id: str, provider: str) -> dict[str, Any]:
        """Probe one endpoint immediately; returns the result dict. LookupError if unknown."""

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file; returns a summary."""


Readiness = Callable[[], Awaitable[dict[str, Any]]]


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in a worker
# thread, which would cost a thread hop per dependency on every request.


def _state(request: Request) -> Any:
    return request.app.state


async def get_settings(request: Request) -> Settings:
    return _state(request).settings


async def get_store(request: Request) -> Store:
    return _state(request).store


async def get_live(request: Request) -> LiveView:
    return _state(request).live


async def get_windows(request: Request) -> WindowedView:
    return _state(request).windows


async def get_rendered(request: Request) -> RenderedBodies:
    return _state(request).rendered


async def get_exposition(request: Request) -> MetricsExposition:
    return _state(request).exposition


async def get_readiness(request: Request) -> Readiness:
    return _state(request).readiness


async def get_admin_hooks(request: Request) -> AdminHooks:
    hooks = _state(request).admin
    if hooks is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "admin operations are not available")
    return hooks


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
LiveDep = Annotated[LiveView, Depends(get_live)]
RenderedDep = Annotated[RenderedBodies, Depends(get_rendered)]
WindowsDep = Annotated[WindowedView, Depends(get_windows)]
ExpositionDep = Annotated[MetricsExposition, Depends(get_exposition)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]
AdminHooksDep = Annotated[AdminHooks, Depends(get_admin_hooks)]

# auto_error=False: a missing header must give our 401 (with WWW-Authenticate), not a 403.
_bearer = HTTPBearer(auto_error=False, description="Bearer <admin token>")
_metrics_bearer = HTTPBearer(
    auto_error=False, scheme_name="MetricsBearer", description="Bearer <metrics token>, when one is configured"
)


def check_bearer(credentials: HTTPAuthorizationCredentials | None, token: str, what: str) -> None:
    """401 unless the request carries `Authorization: Bearer <token>`."""
    offered = b"" if credentials is None else credentials.credentials.encode()
    # Constant-time comparison so response timing does not reveal how much of a guess matched.
    if not hmac.compare_digest(offered, token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, f"missing or invalid {what} token", headers={"WWW-Authenticate": "Bearer"}
        )


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Admin routes are mounted only when a token is configured; this checks the caller has it."""
    token = secret_of(_state(request).settings.admin_token)
    if token is None:  # defensive: create_app does not mount admin routes without a token
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    check_bearer(credentials, token, "admin")


async def require_metrics_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_metrics_bearer)],
) -> None:
    """Guards /metrics when `settings.metrics_token` is set (`create_app` adds it only then)."""
    token = secret_of(_state(request).settings.metrics_token)
    if token is None:  # defensive: not added without a token
        return
    check_bearer(credentials, token, "metrics")


AdminAuthDep = Annotated[None, Depends(require_admin)]
