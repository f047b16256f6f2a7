"""personalize_mw: server-side personalization middleware that measures itself honestly.

One line in a Starlette/FastAPI, Flask or Django site; see the README.
"""

from .asgi import PersonalizeMiddleware
from .config import Config, load_config
from .errors import ConfigError, PersonalizeError
from .touchpoints.queue import flush_all as flush
from .touchpoints.queue import stats_all as stats
from .tracking import context, identify, track
from .wsgi import PersonalizeWSGIMiddleware

__all__ = [
    "Config",
    "ConfigError",
    "PersonalizeError",
    "PersonalizeMiddleware",
    "PersonalizeWSGIMiddleware",
    "context",
    "flush",
    "identify",
    "load_config",
    "stats",
    "track",
]
__version__ = "0.1.0"
