"""Alembic environment for the store database.

At run time kogata calls ``alembic.command.upgrade`` itself (:func:`kogata.core.db.upgrade`) with a config built in
code and an open connection in ``config.attributes["connection"]``; no alembic.ini is read.

To write a new revision (a developer's task), bring a scratch database to head and let Alembic compare it with
the models::

    KOGATA_DB_URL=sqlite:////tmp/scratch.db python -c "from kogata.artifacts.store import Store; Store()"
    KOGATA_DB_URL=sqlite:////tmp/scratch.db alembic -c src/kogata/core/migrations/alembic.ini \
        revision --autogenerate -m "what changes" --rev-id 0004

then read the generated file, make it explicit, and add a test in ``tests/unit/test_migrations.py``.
"""

from __future__ import annotations

import importlib
import os

from alembic import context
from sqlalchemy import create_engine

from kogata.core.db import Base

# Modules whose models live on Base.metadata; imported only when Alembic runs from its own command line
# (autogenerate needs every table), never when kogata upgrades a store.
MODEL_MODULES = ("kogata.core.tables", "kogata.optimize.state", "kogata.ops.tables")

config = context.config
target_metadata = Base.metadata


def _configure(**kw) -> None:
    context.configure(target_metadata=target_metadata, render_as_batch=True, compare_type=True, **kw)


def _run_on(connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def _import_models() -> None:
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


connection = config.attributes.get("connection")
if connection is not None:
    _run_on(connection)
else:
    _import_models()
    url = os.environ.get("KOGATA_DB_URL") or config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        _configure(url=url, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        with create_engine(url).begin() as conn:
            _run_on(conn)
