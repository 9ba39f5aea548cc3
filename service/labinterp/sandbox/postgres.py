"""A real PostgreSQL for the sandbox (HAPI's database, the job queue): Debian's packages, its own cluster
under the work directory, run by a dedicated non-root system user, listening on 127.0.0.1 only.

Layout of `workdir/pg-<port>/` (owned by the user `labinterp-pg`, mode 0700):

    data/       the cluster (initdb once); its unix socket lives in data/ too
    password    the generated password of the database superuser `labinterp` (0600)
    server.log  the server's log

Clients authenticate with scram-sha-256 (TCP on loopback, and the socket). PostgreSQL refuses to run as
root, so initdb and pg_ctl run through `runuser -u labinterp-pg --` when this process is root."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from labinterp.errors import LabinterpError

OS_USER = "labinterp-pg"
DB_USER = "labinterp"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresError(LabinterpError):
    pass


def _bindir() -> Path | None:
    """The newest Debian PostgreSQL (/usr/lib/postgresql/<major>/bin), else initdb on PATH."""
    versions = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if (d / "initdb").exists() and (d / "pg_ctl").exists() and d.parent.name.isdigit():
            versions.append((int(d.parent.name), d))
    if versions:
        return max(versions)[1]
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    return None


class Postgres:
    """One PostgreSQL cluster on 127.0.0.1:`port`, its state under `workdir/pg-<port>`."""

    def __init__(self, workdir: Path, port: int = 5433) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port
        self.home = self.workdir / f"pg-{port}"
        self.datadir = self.home / "data"
        self.logfile = self.home / "server.log"
        self.passfile = self.home / "password"

    def __repr__(self) -> str:
        return f"Postgres(port={self.port}, home={self.home})"

    # --- install -------------------------------------------------------------------------------

    def bindir(self) -> Path:
        found = _bindir()
        if found is None:
            raise PostgresError(
                "PostgreSQL's server binaries are missing: run `bash scripts/ensure-postgres.sh` "
                "(or `apt-get install postgresql` as root)"
            )
        return found

    def install(self) -> None:
        """apt-get install postgresql, if its server binaries are missing."""
        if _bindir() is not None:
            return
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise PostgresError(
                "PostgreSQL is not installed and cannot be installed from here (needs root and apt-get): "
                "install Debian's postgresql package (sudo apt-get install postgresql)"
            )
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
            done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise PostgresError(f"{' '.join(args)} failed: {(done.stdout + done.stderr).strip()[-400:]}")
        if _bindir() is None:
            raise PostgresError("apt-get installed postgresql but its server binaries were not found")

    # --- the OS user and the files -------------------------------------------------------------

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _ensure_user(self) -> None:
        if not self._as_root():
            return  # run as whoever we are (PostgreSQL only refuses root)
        if subprocess.run(["id", "-u", OS_USER], capture_output=True, check=False).returncode == 0:
            return
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", OS_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 and subprocess.run(["id", "-u", OS_USER], capture_output=True, check=False).returncode != 0:
            raise PostgresError(f"could not create the system user {OS_USER}: {done.stderr.strip()}")

    def _owner_ids(self) -> tuple[int, int]:
        if not self._as_root():
            return os.getuid(), os.getgid()
        import pwd

        entry = pwd.getpwnam(OS_USER)
        return entry.pw_uid, entry.pw_gid

    def _ensure_home(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        uid, gid = self._owner_ids()
        os.chown(self.home, uid, gid)
        os.chmod(self.home, 0o700)
        if self._as_root():  # the server user must reach its directory: every parent needs o+x
            for parent in self.home.parents:
                if not os.stat(parent).st_mode & 0o001:
                    raise PostgresError(
                        f"{OS_USER} cannot reach {self.home}: {parent} is not searchable by other users "
                        f"(chmod o+x {parent}, or choose another work directory)"
                    )
        if not self.passfile.exists():
            fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(24) + "\n")
        os.chown(self.passfile, uid, gid)
        os.chmod(self.passfile, 0o600)

    def password(self) -> str:
        try:
            return self.passfile.read_text().strip()
        except OSError as exc:
            raise PostgresError(f"no password file at {self.passfile}: start() the server first") from exc

    def _run(self, tool: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """A server tool (initdb, pg_ctl), as OS_USER when we are root, in its own session (a Ctrl-C to
        the caller does not reach the server)."""
        cmd = [str(self.bindir() / tool), *args]
        if self._as_root():
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        return subprocess.run(
            cmd, cwd=self.home, capture_output=True, text=True, check=False, timeout=timeout, start_new_session=True
        )

    # --- run -----------------------------------------------------------------------------------

    def _initdb(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        if self.datadir.exists():  # a half-made cluster from an interrupted initdb
            shutil.rmtree(self.datadir)
        done = self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            DB_USER,
            f"--pwfile={self.passfile}",
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        if done.returncode != 0:
            raise PostgresError(f"initdb failed: {(done.stdout + done.stderr).strip()[-600:]}")
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# labinterp sandbox (sandbox/postgres.py)\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.datadir}'\n"
                "unix_socket_permissions = 0700\n"
                "max_connections = 200\n"
                "password_encryption = 'scram-sha-256'\n"
            )
        # Only loopback and the socket, only scram (initdb wrote these and the ::1 line; IPv6 is not listened on).
        (self.datadir / "pg_hba.conf").write_text(
            "# labinterp sandbox: the socket and 127.0.0.1 only, passwords (scram-sha-256)\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "local replication all scram-sha-256\n"
            "host replication all 127.0.0.1/32 scram-sha-256\n"
        )

    def running(self) -> bool:
        """The postmaster of this cluster is alive (its pid file names a live process)."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 0)
            return True
        except (OSError, ValueError, IndexError):
            return False

    def accepts(self) -> bool:
        bindir = _bindir()
        if bindir is None:
            return False
        done = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, "-d", "postgres"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def start(self, timeout: float = 60.0) -> None:
        """initdb once, start on 127.0.0.1:port, wait until it accepts connections. Idempotent."""
        self.install()
        self._ensure_user()
        self._ensure_home()
        self._initdb()
        if not self.running():
            done = self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", str(int(timeout)), "start")
            if done.returncode != 0:
                log = self.logfile.read_text(errors="replace")[-600:] if self.logfile.exists() else ""
                raise PostgresError(f"pg_ctl start failed: {(done.stdout + done.stderr).strip()[-300:]} {log}")
        deadline = time.monotonic() + timeout
        while not self.accepts():
            if time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL on 127.0.0.1:{self.port} did not accept connections; see {self.logfile}")
            time.sleep(0.2)

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the server (fast shutdown). False if it was not running."""
        if not self.running():
            return False
        done = self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-t", str(int(timeout)), "stop")
        if done.returncode != 0 and self.running():
            raise PostgresError(f"pg_ctl stop failed: {(done.stdout + done.stderr).strip()[-300:]}")
        return True

    # --- databases -----------------------------------------------------------------------------

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL as the superuser over the socket; returns psql's unaligned output."""
        bindir = self.bindir()
        psql = bindir / "psql" if (bindir / "psql").exists() else Path(shutil.which("psql") or "psql")
        env = dict(os.environ, PGPASSWORD=self.password(), PGCONNECT_TIMEOUT="10")
        args = ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", str(self.datadir), "-p", str(self.port)]
        done = subprocess.run(
            [str(psql), *args, "-U", DB_USER, "-d", db, "-c", sql],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresError(f"psql failed: {done.stderr.strip()[-400:]}")
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name, unless it exists. Returns url(name)."""
        if not _DB_NAME.match(name):
            raise PostgresError(f"not a plain database name: {name!r}")
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            try:
                self.psql(f'CREATE DATABASE "{name}"')
            except PostgresError:
                if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
                    raise  # not a concurrent creation of the same database
        return self.url(name)

    def url(self, db: str) -> str:
        return f"postgresql://{DB_USER}:{self.password()}@127.0.0.1:{self.port}/{db}"

    def jdbc(self, db: str) -> tuple[str, str, str]:
        """(JDBC URL, user, password), for HAPI's datasource."""
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{db}", DB_USER, self.password()
