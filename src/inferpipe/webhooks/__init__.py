"""Signed webhooks, in and out.

Incoming: `sources` keeps a workspace's webhook sources and turns a signed request (Standard
Webhooks, GitHub or Stripe signatures: `signing`) into events, through an optional CEL or Jinja
`transform`, committed before the sender gets its 2xx. The HTTP route is the server's
(`POST /v1/webhooks/<source>`).

Outgoing: `subscriptions` keeps the URLs a workspace wants told of run lifecycle events, and
`delivery` (`enable_delivery(app)`) delivers them as signed Standard Webhooks through two
internal durable functions, with retries, a delivery log, redelivery and secret rotation.

See docs/webhooks.md.
"""
