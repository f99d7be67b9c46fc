"""InfluxQL reads for dashboards and tools: ``/query`` answers on 1.x and, through DBRP, on 2.x."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3

from cloud_api.timeseries.influx_auth import influx_auth_headers

QUERY_TIMEOUT_S = 30.0


class QueryError(Exception):
    """InfluxDB could not run the query; the text is its own message."""


@dataclass(frozen=True)
class Series:
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


class InfluxQL:
    """Runs InfluxQL statements; times come back as epoch milliseconds."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout_s: float = QUERY_TIMEOUT_S,
    ) -> None:
        self._url = url.rstrip("/") + "/query"
        self._database = database
        self._headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **influx_auth_headers(user, password, token),
        }
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout_s), retries=False)

    def query(self, statement: str) -> list[Series]:
        """Every series of every statement of ``statement``; raises ``QueryError``."""
        body = urlencode({"db": self._database, "q": statement, "epoch": "ms"}).encode()
        try:
            response = self._http.request("POST", self._url, body=body, headers=self._headers)
        except urllib3.exceptions.HTTPError as error:
            raise QueryError(f"InfluxDB unreachable: {error}") from error
        try:
            document = json.loads(response.data)
        except ValueError:
            raise QueryError(f"HTTP {response.status}: {response.data[:300]!r}") from None
        if "error" in document:
            raise QueryError(str(document["error"]))
        series: list[Series] = []
        for result in document.get("results", []):
            if "error" in result:
                raise QueryError(str(result["error"]))
            for item in result.get("series", []):
                series.append(
                    Series(
                        name=item.get("name", ""),
                        tags=item.get("tags", {}),
                        columns=item["columns"],
                        values=item.get("values", []),
                    )
                )
        return series

    def close(self) -> None:
        self._http.clear()
