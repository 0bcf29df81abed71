"""The API's models, under the name they had before `inferpipe.wire`: see `inferpipe.wire.schemas`."""

from inferpipe.wire.schemas import *  # noqa: F403 - the same names, for imports written earlier
