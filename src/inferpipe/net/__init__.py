"""Outgoing HTTP under the operator's egress policy, shared by the features that call out:
the workflow `http` node and webhook delivery.

`egress` decides which URLs may be called (no private, loopback or link-local address unless
the operator allows the workspace); `http` makes the call to the address that was checked,
without following redirects.
"""

from __future__ import annotations

from inferpipe.net.egress import EgressPolicy, UrlRefusedError
from inferpipe.net.http import HttpSettings

__all__ = ["EgressPolicy", "HttpSettings", "UrlRefusedError"]
