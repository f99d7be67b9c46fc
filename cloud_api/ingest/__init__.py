"""Stage 1, ingest: the MQTT consumer and what presence, status and health messages do."""
