"""The embedded PostgreSQL never opens root-owned directories to other users."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from core.embedded import EmbeddedPostgres, EmbeddedPostgresError
from ganzhi.benchkit import free_port


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_refuses_a_data_dir_behind_a_private_directory():
    private = Path(tempfile.mkdtemp(prefix="ganzhi-private-"))  # mode 0700, like root's home
    try:
        server = EmbeddedPostgres(private / "var" / "pgdata", free_port())
        with pytest.raises(EmbeddedPostgresError, match="cannot enter") as caught:
            server.start()
        assert "set DATABASE_URL" in str(caught.value)
        assert stat.S_IMODE(private.stat().st_mode) == 0o700  # left as it was
    finally:
        for path in sorted(private.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        private.rmdir()
