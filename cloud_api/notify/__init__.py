"""Stage 5, notify: delivering the offers over MQTT, webhooks and server-sent events."""
