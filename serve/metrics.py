"""Prometheus metrics of a policy server (one registry per server, so tests can run
several servers in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sim2real.serve.model import LoadedModel

# Buckets from 25 us to 100 ms: a control loop cares about the sub-millisecond range.
LATENCY_BUCKETS = (
    25e-6, 50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6,
    1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 100e-3,
)


class ServerMetrics:
    """Request latency, errors by code, actions clamped, serving versions, provider."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "sim2real_request_latency_seconds",
            "Server time per request, from decoded request to built response.",
            ["method", "model"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.requests = Counter(
            "sim2real_requests", "Requests handled (streamed messages count one each).",
            ["method"], registry=r,
        )
        self.errors = Counter(
            "sim2real_request_errors", "Requests answered without an action, by gRPC code.",
            ["method", "code"], registry=r,
        )
        self.clamped = Counter(
            "sim2real_actions_clamped", "Actions the model put outside [-1, 1].", ["model"], registry=r
        )
        self.rate_limited = Counter(
            "sim2real_actions_rate_limited", "Actions cut by --max-action-delta.", ["model"], registry=r
        )
        self.model_version = Gauge(
            "sim2real_model_version", "Serving version of each model.", ["model"], registry=r
        )
        self.provider = Gauge(
            "sim2real_execution_provider", "1 for the onnxruntime provider each model runs on.",
            ["model", "provider"], registry=r,
        )
        self.reloads = Counter(
            "sim2real_model_loads", "Model versions swapped in (including the first).", ["model"],
            registry=r,
        )
        self.streams = Gauge("sim2real_open_streams", "StreamAct calls open now.", registry=r)
        self.fastpath_reports_dropped = Counter(
            "sim2real_fastpath_reports_dropped",
            "Steps the C++ front end served but could not report (this process was not reading its "
            "reports): missing from the request metrics and the recording.",
            registry=r,
        )
        self._http: Any = None

    def on_model_loaded(self, model: LoadedModel) -> None:
        self.model_version.labels(model.name).set(model.version)
        self.provider.labels(model.name, model.provider).set(1)
        self.reloads.labels(model.name).inc()

    def serve_http(self, host: str, port: int) -> int:
        """Expose /metrics; returns the bound port (0 picks a free one)."""
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as err:
            # The bare OSError ("Address already in use") does not say which of the
            # server's two ports it is about (issue 12, item 7).
            named = OSError(f"cannot serve metrics on {host}:{port} (--metrics-port {port}): {err.strerror or err}")
            named.errno = err.errno
            raise named from err
        self._http = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
