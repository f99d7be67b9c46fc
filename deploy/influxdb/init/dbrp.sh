#!/bin/sh
# Run once by the influxdb:2 image after its first setup (docker-entrypoint-initdb.d).
# InfluxQL, which Grafana's dashboards and the cloud's reads speak, finds a bucket through a
# DBRP mapping: database "storelink", retention policy "autogen" -> the storelink bucket. The same
# dashboards then run unchanged on an InfluxDB 1.8 whose database is called storelink.
set -e
influx v1 dbrp create \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db storelink \
  --rp autogen \
  --default \
  --org "${DOCKER_INFLUXDB_INIT_ORG}"
