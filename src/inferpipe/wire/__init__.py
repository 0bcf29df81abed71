"""The HTTP API's wire format, shared by the server and the Python client.

- :mod:`inferpipe.wire.schemas` - the request and response models (pydantic);
- :mod:`inferpipe.wire.errors` - the error codes and the status each one answers.

It imports only pydantic and `inferpipe.core`, so the client (`inferpipe.client`) loads it and
httpx, and none of the engine, the store, the streams or FastAPI.
"""
