"""Time series for dashboards: what the ingest committed, as InfluxDB points.

See docs/timeseries.md.

``points`` maps domain facts to points (pure); ``sinks`` write them to InfluxDB 2.x, InfluxDB 1.x
or, with no InfluxDB configured, to SQL; ``buffer`` keeps them on disk through an outage;
``writer`` runs all of it on a thread of its own, off the ingest's path; ``query`` reads them
back in InfluxQL.

No point carries a shopper id or a subject pseudonym, as a tag or as a field: the time series
hold counts and measurements per store, zone and gateway only, so erasing a shopper never has to
touch them.
"""
