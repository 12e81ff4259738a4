"""Utilities: atomic writes, filesystem/JSON/seeding helpers, logging tee, meters, registries, checkpoint helpers."""

from .atomic import *  # noqa: F403
from .logger import *  # noqa: F403
from .meters import *  # noqa: F403
from .registry import *  # noqa: F403
from .tools import *  # noqa: F403
from .torchtools import *  # noqa: F403
