"""The storelink cloud: presence events in from MQTT, offers out to the shoppers who consented.

Follow the data, one package per stage::

    MQTT -> ingest -> store -> match -> offers -> notify -> routes, dashboard

- ``ingest``: the MQTT consumer; presence events resolved to consenting shoppers and stitched
  into visits, gateway status and beacon health, the shopper app's check-ins.
- ``store``: the database: engine and sessions, the tables, Alembic migrations.
- ``match``: campaigns and the pure decision of which offer, if any, an event earns.
- ``offers``: offer codes and their redemption, once, at a till or online.
- ``notify``: the outbox that delivers offers over MQTT, webhooks and server-sent events.
- ``stats`` and ``timeseries``: footfall and engagement figures, and the time series written
  for Grafana.
- ``routes`` (with ``api``, what every route shares) and ``dashboard``: the HTTP shell.

Beside the flow: ``fleet`` (stores, zones, gateways and their retained configs), ``auth``
(administrator, staff, API keys, app signatures), ``shoppers`` (consent, devices, loyalty,
personal data) and ``commerce`` (carts and orders from e-commerce webhooks). ``app`` holds the
factory (``cloud_api.app:create_app``), ``config`` the settings, ``deps`` the FastAPI
dependencies and ``metrics`` the Prometheus figures.

The rules (token resolution, visit stitching, the offer decision, footfall and funnel figures)
are pure functions; everything that touches the database, the broker or HTTP is a thin shell
around them.
"""
