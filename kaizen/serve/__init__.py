"""`kaizen serve`: an agent or a workflow over HTTP, its runs' events as Server-Sent Events.

`app.py` makes the FastAPI application (`create_app`: the endpoints, auth, the OpenAPI
document), `target.py` what is served and how a posted body is checked (`ServedTarget`),
`runs.py` starts and tracks runs on the server's loop (`RunManager`), `sse.py` encodes events,
`server.py` runs it (`serve` for the command, `BackgroundServer` on a thread). Runs and their
events live in the store (`kaizen.store.served`). Needs the ``serve`` extra (FastAPI, uvicorn),
imported only when an app is made: ``from kaizen.serve.app import create_app``.
"""

from __future__ import annotations
