"""``polyvec serve`` (the HTTP server) and ``polyvec keys`` (its API keys)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .io import CliError

__all__ = ["add_parser", "run_keys", "run_serve"]


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", parents=common, help="serve the database over HTTP")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; others need API keys)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--keys", metavar="FILE", help="API keys file (default: the database "
                   "folder's, made by `polyvec keys create`); with keys every request needs one")
    p.add_argument("--max-body", type=int, metavar="BYTES", help="largest request body "
                   "(default 256 MiB)")
    p.add_argument("--reports", metavar="DIR", help="evaluation reports the dashboard shows "
                   "(default: the database folder's reports/; `polyvec eval --out` writes them)")

    p = sub.add_parser("keys", parents=common, help="create, list or revoke API keys")
    ks = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    c = ks.add_parser("create", parents=common, help="make a key (printed once)")
    c.add_argument("--scope", choices=["read", "write", "admin"], required=True)
    c.add_argument("--collections", metavar="A,B", help="only these collections")
    ks.add_parser("list", parents=common, help="the keys' ids, scopes and collections")
    r = ks.add_parser("revoke", parents=common, help="revoke a key by its id")
    r.add_argument("id")


def _keys(args: argparse.Namespace) -> Any:
    from polyvec.server.auth import KeyStore

    db = Path(args.db)
    if not (db / "polyvec.json").exists():
        raise CliError(f"no database folder at {db} (pass --db PATH or set POLYVEC_DB)")
    return KeyStore.of(db)


def run_keys(args: argparse.Namespace) -> int:
    from polyvec.server.auth import key_json

    store = _keys(args)
    if args.keys_command == "create":
        cols = None if args.collections is None else \
            [c.strip() for c in args.collections.split(",") if c.strip()]
        secret, key = store.create(args.scope, collections=cols)
        if args.json:
            print(json.dumps({"key": secret, **key_json(key)}))
        else:
            print(secret)
            print(f"(key id {key.id}, scope {key.scope}; it is shown only now)")
        return 0
    if args.keys_command == "list":
        keys = [key_json(k) for k in store.list()]
        if args.json:
            print(json.dumps(keys))
        for k in [] if args.json else keys:
            when = datetime.fromtimestamp(k["created"], UTC).strftime("%Y-%m-%d %H:%M")
            where = ",".join(k["collections"]) if k["collections"] else "all"
            print(f"{k['id']}  {k['scope']:5s}  {where}  {when}"
                  f"{'  revoked' if k['revoked'] else ''}")
        return 0
    if not store.revoke(args.id):
        raise CliError(f"no active key with id {args.id!r}")
    print(f"revoked key {args.id}")
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise CliError("`polyvec serve` needs the server extra: pip install "
                       "'polyvec[server]'") from None
    from polyvec.server.app import (
        DEFAULT_MAX_BODY,
        ENV_DB,
        ENV_KEYS,
        ENV_MAX_BODY,
        ENV_REPORTS,
        ENV_WORKERS,
    )
    from polyvec.server.auth import KeyStore

    db = Path(args.db)
    if not (db / "polyvec.json").exists():
        raise CliError(f"no database folder at {db} (pass --db PATH or set POLYVEC_DB; "
                       "`polyvec create` makes one)")
    store = KeyStore(Path(args.keys)) if args.keys else KeyStore.of(db)
    secured = args.keys is not None or store.exists()
    if not secured and not _loopback(args.host):
        raise CliError(f"refusing to serve {args.host} without API keys: anyone who reaches "
                       "it could read and change the data. Create one with `polyvec keys "
                       "create --scope admin`, or bind to 127.0.0.1")
    if args.workers < 1 or not 0 <= args.port < 65536:
        raise CliError(f"expected --workers >= 1 and a port in [0, 65535], got "
                       f"{args.workers} and {args.port}")
    os.environ[ENV_DB] = str(db.resolve())
    os.environ[ENV_KEYS] = str(store.path.resolve()) if secured else ""
    os.environ[ENV_MAX_BODY] = str(args.max_body or DEFAULT_MAX_BODY)
    os.environ[ENV_WORKERS] = str(args.workers)
    os.environ[ENV_REPORTS] = str(Path(args.reports).resolve()) if args.reports else ""
    print(f"serving {db} at http://{args.host}:{args.port} ({args.workers} worker"
          f"{'s' if args.workers > 1 else ''}, API keys {'required' if secured else 'off'})",
          flush=True)
    uvicorn.run("polyvec.server.app:from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", timeout_graceful_shutdown=10)
    return 0
