"""The order/payment example service, its load generator and the live demo (see README.md)."""

from examples.orders_app.app import Settings, SimClock, create_app, serve

__all__ = ["Settings", "SimClock", "create_app", "serve"]
