"""Run the SuperOffice stand-in on its own: `python -m sync.testing.superoffice [--seed]`.

For trying a connector by hand or a demo: prints the base URL and the Basic credentials, books a
weekly series when asked, and serves until interrupted (or for `--for` seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import threading

from sync.testing.superoffice.server import SuperOfficeStandIn

SEED_SERIES = {
    "Title": "Weekly check-in",
    "StartDate": "2026-03-02T09:00:00",
    "EndDate": "2026-03-02T09:30:00",
    "Recurrence": {
        "IsRecurrence": True,
        "Pattern": "Weekly",
        "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
        "RecurrenceEndType": "Counter",
        "RecurrenceCounter": 6,
    },
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sync.testing.superoffice")
    parser.add_argument("--port", type=int, default=0, help="0 (the default): a free port")
    parser.add_argument("--user", default="sync")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--associate", type=int, default=5)
    parser.add_argument("--seed", action="store_true", help="book a weekly series of 6")
    parser.add_argument("--for", dest="seconds", type=float, help="stop after this many seconds")
    args = parser.parse_args(argv)
    with SuperOfficeStandIn(port=args.port, retry_delay_scale=1.0) as crm:
        crm.add_basic_user(args.user, args.password, args.associate)
        if args.seed:
            crm.create(SEED_SERIES, associate_id=args.associate)
        print(f"SuperOffice stand-in at {crm.base_url} (Basic {args.user}:{args.password})")
        print(f"system user: SO-AppToken {crm.sign_in.application_token}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait(args.seconds)


if __name__ == "__main__":
    main()
