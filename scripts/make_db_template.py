"""Make pnr/backend/templates/prefect-<version>.db.gz: the SQLite database of a Prefect server that has started
once (migrated, block types registered) and holds no runs, events or logs. pnr's server starts from a copy of
it instead of migrating an empty database (pnr.backend.server.seed_database). Run it after changing Prefect's
version, and commit the two files it writes:

    .venv/bin/python scripts/make_db_template.py
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from pnr.backend import server

KEEP = ("alembic_version", "block_type", "block_schema", "block_schema_reference")  # what the start made


def main() -> None:
    target = server.template_path()
    with tempfile.TemporaryDirectory(prefix="pnr-db-template-") as tmp:
        home = Path(tmp) / "prefect-home"
        db = home / "prefect.db"
        # an explicit database URL: the server migrates a new database instead of seeding from a template
        server.start(database_url=f"sqlite+aiosqlite:///{db}", state_dir=tmp)
        server.stop(state_dir=tmp)
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                if table not in KEEP and not table.startswith("sqlite_"):
                    conn.execute(f'DELETE FROM "{table}"')
            conn.execute("PRAGMA journal_mode = DELETE")  # one file, no -wal beside it
            conn.execute("VACUUM")
        finally:
            conn.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(db, "rb") as src, gzip.GzipFile(target, "wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst)
        memo = home / "memo_store.toml"
        if memo.is_file():
            shutil.copyfile(memo, server.template_memo(target))
    print(f"wrote {target} ({target.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
