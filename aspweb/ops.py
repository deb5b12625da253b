"""The service surface for whoever runs aspweb: GET /healthz, /readyz and /metrics.

Neither probe needs sign-in, and neither says more than which part is failing: no versions, hosts, settings
or error texts (those go to the log). /metrics answers only a request with ASPWEB_METRICS_TOKEN as its
bearer token, or from an address in ASPWEB_METRICS_ALLOW.
"""

import hmac
import ipaddress
import logging

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from . import metrics

logger = logging.getLogger(__name__)
_PROBE_TIMEOUT_SECONDS = 3
# Once a process has seen every migration applied, that stays true until it is replaced by a newer release.
_migrated: set[str] = set()


@require_safe
@never_cache
async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving: no database, no cache."""
    return JsonResponse({"status": "ok"})


@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready for traffic: the database answers, every migration is applied, the cache answers. 503 names
    each part that is not."""
    checks = {"database": _database()}
    checks["migrations"] = _migrations() if checks["database"] == "ok" else "unknown"
    checks["cache"] = _cache()
    ready = all(state == "ok" for state in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _database() -> str:
    """A fresh connection with a short timeout, beside the connection pool: an unreachable database fails the
    probe in seconds instead of waiting for a pooled connection."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        if connection.vendor == "postgresql":
            params = {**connection.get_connection_params(), "connect_timeout": _PROBE_TIMEOUT_SECONDS}
            with connection.Database.connect(**params) as probe:
                probe.execute("SELECT 1")
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
    except Exception as exc:
        logger.warning("Readiness: the database is unreachable: %r", exc)
        return "unreachable"
    return "ok"


def _migrations() -> str:
    if DEFAULT_DB_ALIAS in _migrated:
        return "ok"
    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        logger.warning("Readiness: could not read the applied migrations: %r", exc)
        return "unknown"
    if pending:
        logger.warning("Readiness: %d migrations are not applied (manage.py migrate)", len(pending))
        return "pending"
    _migrated.add(DEFAULT_DB_ALIAS)
    return "ok"


def _cache() -> str:
    """Redis when REDIS_URL is set (the cache, the broker, the ledger's journal); the embedded default's cache
    is the process's own memory."""
    if not settings.REDIS_URL:
        return "ok"
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=_PROBE_TIMEOUT_SECONDS,
                                  socket_timeout=_PROBE_TIMEOUT_SECONDS)
    try:
        client.ping()
    except redis.RedisError as exc:
        logger.warning("Readiness: Redis is unreachable: %r", exc)
        return "unreachable"
    finally:
        client.close()
    return "ok"


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. Sync: collectors read shared state (circuit breakers) from the database and the
    cache."""
    if not _may_scrape(request):
        response = HttpResponse("Metrics need the bearer token or an allowed address.\n", status=403,
                                content_type="text/plain; charset=utf-8")
        if settings.METRICS_TOKEN:
            response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(metrics.render(), content_type=metrics.CONTENT_TYPE)


def _may_scrape(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if settings.METRICS_TOKEN and scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), settings.METRICS_TOKEN.encode()):
        return True
    if not settings.METRICS_ALLOW:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in settings.METRICS_ALLOW)
