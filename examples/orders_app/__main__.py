"""``python -m examples.orders_app --host 127.0.0.1 --port 8080 --exports DIR [--speed 60] [--seed 0]
[--faults SPEC ...]``: the order/payment service under waitress (see README.md)."""

import logging
import sys

from examples.orders_app.app import Settings, serve


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return serve(Settings.from_args(argv))


if __name__ == "__main__":
    sys.exit(main())
