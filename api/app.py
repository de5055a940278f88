"""The FastAPI app mounted under /api in streamlit_app.py's `st.App`, and its routes.

Every path under /api answers JSON: the endpoints, FastAPI's schema (`/api/openapi.json`), and
errors: a typed `interp` error becomes 4xx (or 503 for a busy model)
with its message, a request FastAPI can't validate becomes 422 with what is wrong where, an
unknown path or method 404/405, anything else a bare 500; never a traceback, and no message
carries the server's folders. No CORS headers are sent, so browsers on other sites can't read
the answers (same-origin policy); scripts and notebooks are unaffected. The one HTML page,
`/api/docs` (Swagger UI), loads its script and style from `/api/docs-assets` (the copy of Swagger
UI that the `fastapi-offline` wheel bundles), not from a CDN, so it works on an offline server.
"""

import dataclasses
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.routing import Mount

from api.analyses import ANALYSES, Analysis
from api.demos import ChatRequest, PredictRequest, chat, predict
from api.guards import BearerToken, BodySizeLimit, RateLimit, client_key
from api.requests import MAX_NAME_CHARS
from api.work import ModelWork, open_model
from interp import errors
from interp.caching import model_cache, secrets
from interp.export import plain
from interp.models import MODEL_REGISTRY, default_device, default_model_name, is_available
from interp.settings import Settings, apply_torch_threads

LOG = logging.getLogger(__name__)
APP_ROOT = Path(__file__).resolve().parent.parent
# Swagger UI 5 (FastAPI's schema is OpenAPI 3.1, which Swagger UI 4 can't render), as files.
SWAGGER_UI_FOLDER = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS = "/docs-assets"

# First match wins (subclasses before their bases).
ERROR_STATUS: tuple[tuple[type[errors.InterpError], int], ...] = (
    (errors.QueueFullError, 503),
    (errors.AnalysisCancelledError, 503),
    (errors.ClassifierUnavailableError, 503),
    (errors.ModelNotAllowedError, 403),
    (errors.ModelUnavailableError, 400),
    (errors.InvalidPromptError, 422),
    (errors.InvalidOptionError, 422),
    (errors.UnsupportedArchitectureError, 422),
    (errors.UnreachableSiteError, 422),
    (errors.SAEFormatError, 422),
    (errors.InterpError, 400),
)
BUSY_RETRY_S = 5  # Retry-After for a full queue, which gives no estimate of its own


def without_server_paths(text: str) -> str:
    """`text` with the app's and Python's folders replaced by placeholders."""
    for folder, placeholder in ((str(APP_ROOT), "<app>"), (sys.prefix, "<python>"),
                                (str(Path.home()), "~")):
        if len(folder) > 1:
            text = text.replace(folder, placeholder)
    return text


def error_response(status: int, detail: str, error: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": without_server_paths(detail), "error": error},
                        status_code=status, headers=headers)


def interp_error(request: Request, error: errors.InterpError) -> JSONResponse:
    status = next(code for kind, code in ERROR_STATUS if isinstance(error, kind))
    headers = None
    if status == 503:
        wait = getattr(error, "retry_after_s", BUSY_RETRY_S)
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
    return error_response(status, str(error), type(error).__name__, headers)


def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = ["{}: {}".format(".".join(str(part) for part in problem.get("loc", ())),
                                problem.get("msg", "invalid")) for problem in error.errors()]
    return error_response(422, "The request is not valid: " + "; ".join(problems[:10]) + ".",
                          "InvalidRequest")


def http_error(request: Request, error: HTTPException) -> JSONResponse:
    if error.status_code == 404:
        detail = (f"There is no API endpoint at {request.url.path}. The endpoints are listed at "
                  f"{request.scope.get('root_path', '')}/docs.")
    elif error.status_code == 405:
        detail = f"{request.url.path} does not answer {request.method} requests."
    else:
        detail = str(error.detail)
    return error_response(error.status_code, detail, "NotFound" if error.status_code == 404
                          else "MethodNotAllowed" if error.status_code == 405 else "HTTPError",
                          dict(error.headers or {}))


def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    LOG.exception("API request to %s failed", request.url.path)
    return error_response(500, "The server failed on this request; the error is in its log.",
                          "InternalError")


def exported(analysis: Analysis, work: ModelWork) -> Callable:
    """The handler of one registered analysis: its request model in, its page export out (made
    on the worker thread too: serializing a large result would hold up the event loop)."""
    async def endpoint(request: analysis.request, http: Request) -> Response:
        settings = (work.settings,) if analysis.uses_settings else ()
        body = await work.run(client_key(http.scope), request.model, analysis.call, request,
                              *settings, finish=analysis.export)
        return Response(body, media_type="application/json")

    endpoint.__name__ = f"analysis_{analysis.name}"
    return endpoint


def as_json(answer: dict) -> bytes:
    return json.dumps(plain(answer), ensure_ascii=False).encode("utf-8")


def model_card(model) -> dict:
    info = model.info
    card = dataclasses.asdict(info)
    card["source"] = info.shown_source
    card["params_label"] = info.params_label
    return card


def create_api(settings: Settings) -> FastAPI:
    """The API with `settings`' limits; mount it under /api."""
    apply_torch_threads(settings)
    work = ModelWork(settings)
    app = FastAPI(title="GPT-2 Interpretability Workbench API", version="1",
                  summary="The dashboard's analyses as JSON, on the dashboard's own models.",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.add_exception_handler(errors.InterpError, interp_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)

    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI_FOLDER), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(http: Request) -> HTMLResponse:
        root = http.scope.get("root_path", "")  # "/api" when mounted
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title=app.title + " - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png")

    @app.get("/health", summary="Whether the server is up, which models are loaded, the device")
    async def health() -> dict:
        cache = model_cache()
        return {"status": "ok", "models_loaded": cache.names(), "loads": cache.load_counts(),
                "device": default_device()}

    @app.get("/models", summary="The registered models: what each is, whether it can load, "
                                "whether it is loaded")
    async def models() -> dict:
        loaded = set(model_cache().names())
        return {
            "default": default_model_name(),
            "custom_models_allowed": settings.allow_custom_models,
            "models": [{"key": spec.key, "label": spec.label, "n_params": spec.n_params,
                        "description": spec.description, "is_demo": spec.is_demo,
                        "source": "bundled with the app" if spec.is_local else spec.source,
                        "available": is_available(spec), "loaded": spec.key in loaded}
                       for spec in MODEL_REGISTRY.values()],
        }

    @app.get("/model_info", summary="A model's card (loading it if needed)")
    async def model_info(model: str = Query(min_length=1, max_length=MAX_NAME_CHARS)) -> dict:
        return model_card(await work.call(open_model, model, settings))

    @app.post("/predict", summary="The verb-agreement demo: both verbs' probabilities, "
                                  "patching by layer, and the explanation",
              response_class=Response)
    async def predict_verb(request: PredictRequest, http: Request) -> Response:
        body = await work.run(client_key(http.scope), request.model, predict, request,
                              finish=as_json)
        return Response(body, media_type="application/json")

    @app.post("/chat", summary="A reply to the conversation, with every generated token's "
                               "logit lens (top-k per layer)", response_class=Response)
    async def chat_reply(request: ChatRequest, http: Request) -> Response:
        body = await work.run(client_key(http.scope), request.model, chat, request,
                              finish=as_json)
        return Response(body, media_type="application/json")

    for analysis in ANALYSES.values():
        app.post(f"/{analysis.name}", summary=analysis.summary, response_class=Response,
                 name=analysis.name)(exported(analysis, work))

    # Added innermost first: the rate limit sees every request, then the token, then the size.
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_kb * 1024)
    if settings.api_token:
        app.add_middleware(BearerToken, token=settings.api_token)
    app.add_middleware(RateLimit, rate_per_minute=settings.api_requests_per_minute)
    return app


def api_routes(settings: Settings | None = None) -> list[Mount]:
    """The routes streamlit_app.py gives its `st.App`: the API under /api, or none when
    `WORKBENCH_API` is off."""
    settings = settings or Settings.from_env(secrets())
    if not settings.api:
        return []
    return [Mount("/api", app=create_api(settings))]
