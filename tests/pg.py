"""Start and stop a throwaway cluster of the system PostgreSQL (Debian's
/usr/lib/postgresql/<major>/bin) for the test session.

The embedded server only listens on a unix socket with trust auth; this one also listens
on 127.0.0.1 with scram passwords, so password URLs and masking are tested for real.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc

ROLE = "etl_test"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin that has pg_ctl, or None."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SystemPostgres:
    """One initdb'd cluster in a temp dir; `start()` it, `stop()` it (only this one)."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="etl-syspg-")))
    port: int = field(default_factory=_free_port)
    # Characters that must be percent-encoded in a URL, so the encoding path is exercised.
    password: str = field(default_factory=lambda: "p@ss:" + secrets.token_hex(8))

    @property
    def major(self) -> int:
        return int(self.bindir.parent.name)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, dbname: str = "postgres") -> str:
        """TCP URL with the test role's password (percent-encoded)."""
        from urllib.parse import quote

        return f"postgresql://{ROLE}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def _superuser_url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"

    def _run(self, *args: str) -> None:
        # PostgreSQL refuses to run as root; the Debian package ships a postgres user.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, text=True)

    def start(self) -> SystemPostgres:
        self.socket_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )
        # Durability is pointless for a throwaway cluster and makes CREATE DATABASE slow.
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = self.root / "server.log"
        try:
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(log),
                "-o", options, "-w", "-t", "60", "start",
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {exc.stderr}\n{text}") from exc
        with adbc.connect(self._superuser_url(), autocommit=True) as conn, conn.cursor() as cur:
            # Data never goes into SQL text, but a role's password cannot be a parameter;
            # it is our own generated literal with no quote in it.
            assert "'" not in self.password
            cur.execute(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{self.password}'")
            # DROP DATABASE ... WITH (FORCE) must also end an autovacuum worker that
            # happens to be in the test's database; those run as no role of ours.
            cur.execute(f"GRANT pg_signal_backend TO {ROLE}")
        return self

    def stop(self) -> None:
        """Stop this cluster (by its data directory) and remove its files."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
