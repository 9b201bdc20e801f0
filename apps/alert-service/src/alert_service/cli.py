"""`alert-service`: serve, worker, demo, dev.

alert-service serve [--host H] [--port P]     the rules API
alert-service worker                          evaluator + webhook delivery until SIGTERM/SIGINT
alert-service demo                            the end-to-end demo on the embedded database
alert-service dev                             demo data, then both APIs and a worker
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from database.errors import DatabasePackageError


def _worker() -> int:
    from alert_service.changes import change_source
    from alert_service.delivery import Deliverer
    from alert_service.evaluator import Evaluator
    from database.engine import Database
    from database.settings import get_settings

    stop = threading.Event()

    def shutdown(signum: int, _: FrameType | None) -> None:
        logging.getLogger("alert_service").info("signal %d: finishing the batch in hand", signum)
        stop.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    database = Database()
    evaluator, deliverer = Evaluator(database), Deliverer(database)
    source = change_source(database, get_settings())
    logging.getLogger("alert_service").info("listening through %s", type(source).__name__)
    delivery = threading.Thread(target=deliverer.run, args=(stop,), name="delivery")
    delivery.start()
    try:
        # Returns after the batch in hand; the cursor is committed with it.
        evaluator.run(stop, source=source)
    finally:
        stop.set()
        delivery.join()
        database.dispose()
    return 0


def _dev() -> int:
    from alert_service.demo import dev_jwt_secret, dev_token, ensure_users, run_demo
    from database.engine import Database
    from database.settings import get_settings

    secret = dev_jwt_secret(get_settings().local_db_dir)
    database = Database()
    print(run_demo(database))
    users = ensure_users(database)
    database.dispose()
    env = {**os.environ, "SUPABASE_JWT_SECRET": secret}
    python = sys.executable
    children = [
        subprocess.Popen([python, "-m", "whale_tracker.cli", "serve", "--port", "8001"], env=env),  # noqa: S603
        subprocess.Popen([python, "-m", "alert_service.cli", "serve", "--port", "8002"], env=env),  # noqa: S603
        subprocess.Popen([python, "-m", "alert_service.cli", "worker"], env=env),  # noqa: S603
    ]
    print("\nwhale tracker API  http://127.0.0.1:8001/docs")
    print("alert service API  http://127.0.0.1:8002/docs   (worker running)")
    for name, uid in users.items():
        print(f"\n{name}: Authorization: Bearer {dev_token(secret, uid, f'{name}@demo.test')}")
    print("\nCtrl-C stops everything.")

    def interrupt(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the children too, like Ctrl-C

    signal.signal(signal.SIGTERM, interrupt)
    try:
        for child in children:
            child.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alert-service", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the rules API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8002)
    sub.add_parser("worker", help="evaluate new whale transactions and deliver webhooks")
    sub.add_parser("demo", help="end-to-end demo on the embedded database")
    sub.add_parser("dev", help="demo data, then both APIs and a worker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            import uvicorn

            from alert_service.api import create_app

            uvicorn.run(create_app(), host=args.host, port=args.port)
            return 0
        if args.command == "worker":
            return _worker()
        if args.command == "demo":
            from alert_service.demo import run_demo

            logging.getLogger("alert_service").setLevel(logging.WARNING)
            logging.getLogger("alembic").setLevel(logging.WARNING)
            print(run_demo())
            return 0
        return _dev()
    except DatabasePackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
