"""Building the server from its settings: ``from_environment`` is uvicorn's factory, called once in
each worker process (``asrkit serve`` writes the settings to ``ASRKIT_SERVE`` as JSON)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from asrkit.errors import AsrkitError
from asrkit.recognize.recognizer import Recognizer
from asrkit.search.options import SearchOptions
from asrkit.serve.app import create_app, load_keys
from asrkit.serve.engine import Engine
from asrkit.serve.fields import Settings

VARIABLE = "ASRKIT_SERVE"


def build(exp: str | Path, search: SearchOptions | None = None, *, max_sessions: int = 8, threads: int = 0,
          api_key_file: str | Path | None = None, batch: bool = True, **settings):
    """(Starlette app, engine) serving ``exp`` (an experiment dir, checkpoint or bundle)."""
    recognizer = Recognizer(exp, threads=threads)
    search = search or SearchOptions()
    recognizer.word_resources(search)  # a bad --lm/--lexicon fails now
    keys = load_keys(api_key_file) if api_key_file else ()
    engine = Engine(recognizer, search, max_sessions, batch)
    path = Path(exp)
    model_id = f"{path.parent.name}/{path.stem}" if path.suffix == ".pt" else path.name  # exp/avg_10.pt: "exp/avg_10"
    return create_app(engine, Settings(model_id=model_id, api_keys=keys, **settings)), engine


def from_environment():
    """The app that ``ASRKIT_SERVE`` describes."""
    raw = os.environ.get(VARIABLE)
    if not raw:
        raise AsrkitError(f"{VARIABLE} is not set: start the server with asrkit serve")
    settings = json.loads(raw)
    search = SearchOptions(**settings.pop("search"))
    app, _ = build(settings.pop("exp"), search, **settings)
    return app


__all__ = ["build", "from_environment"]
