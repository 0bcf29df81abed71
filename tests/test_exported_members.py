"""The package root's `__all__` is exactly its public names, and each one resolves."""

from __future__ import annotations

import inferpipe


def test_all_lists_every_public_name_and_only_those() -> None:
    public = {name for name in vars(inferpipe) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(inferpipe, name)).__name__ == "module"}
    assert set(inferpipe.__all__) == public - modules
    assert len(inferpipe.__all__) == len(set(inferpipe.__all__))
