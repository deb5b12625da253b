"""LOG_FORMAT=json: each log record as one JSON object on one line, for log shippers (settings.LOGGING).

Imported while logging is configured, before the apps load: nothing here may import a model.

Keys: `time` (UTC, ISO 8601), `level`, `logger`, `pid` (which worker), `message`, then whatever the record was
given as `extra` (the call path's line: request_id, user, key_prefix, provider, model, status, latency_ms,
cost_usd, ...), and `exception` with the traceback when there is one. A request Django attaches to its records is
reduced to its method and path (never its query string, headers or body).
"""

import json
import logging
from datetime import UTC, datetime
from typing import Any

# What every LogRecord has: not extras.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name in _STANDARD or name in line:
                continue
            if name == "request":
                line["method"], line["path"] = getattr(value, "method", None), getattr(value, "path", None)
            else:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)
