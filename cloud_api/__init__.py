"""The storelink cloud: shoppers and consent, cart webhooks, MQTT presence ingest, offers.

The rules (token resolution, visit stitching, the offer decision, code generation) are pure
functions in ``resolve``, ``visits``, ``match`` and ``codes``; everything that touches the
database, the broker or HTTP is a thin shell around them.
"""
