"""Serving: the HTTP and WebSocket server (``asrkit serve``), a thin face over the recognizer.

``engine`` owns the recognizer and its one worker thread (batching, sessions), ``app`` the
endpoints (parsing, limits, auth; OpenAI's request and response shapes), ``stream`` the
WebSocket protocol over a ``StreamingSession``, ``static/`` the browser page. The top layer
beside ``cli``: it may import recognize, search, data and the base modules; only the CLI
imports it. Needs the ``serve`` extra (Starlette, uvicorn, python-multipart, websockets).
"""
