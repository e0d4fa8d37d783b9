"""Prometheus metrics, one registry per app (so tests and several apps in one
process never collide). Labels carry routes, statuses, detectors and actions,
never tenants' content."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mantlet.core.types import Verdict

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mantlet_requests_total",
            "Requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mantlet_request_seconds",
            "Request latency by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.verdicts = Counter(
            "mantlet_verdicts_total",
            "Guard verdicts by side and action.",
            ["side", "action"],
            registry=self.registry,
        )
        self.findings = Counter(
            "mantlet_findings_total",
            "Findings by detector, kind and action.",
            ["detector", "kind", "action"],
            registry=self.registry,
        )
        self.detector_runs = Counter(
            "mantlet_detector_runs_total",
            "Detector runs by status (ok, error, timeout, skipped).",
            ["detector", "status"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "mantlet_upstream_errors_total",
            "Failed upstream calls.",
            ["upstream"],
            registry=self.registry,
        )
        self.upstream_refusals = Counter(
            "mantlet_upstream_refusals_total",
            "Upstream answers refusing the request itself (HTTP 4xx), by upstream and status.",
            ["upstream", "status"],
            registry=self.registry,
        )
        self.limit_rejections = Counter(
            "mantlet_limit_rejections_total",
            "Requests refused by a rate limit or budget.",
            registry=self.registry,
        )
        # Labelled children by (metric, labels): ``labels()`` takes a lock and
        # validates on every call, a dozen times a request; the label sets
        # are few (detectors, kinds, actions, routes, statuses).
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_verdict(self, verdict: Verdict) -> None:
        self.child(self.verdicts, verdict.side.value, verdict.action.value).inc()
        for finding in verdict.findings:
            action = finding.action.value if finding.action else "none"
            self.child(self.findings, finding.detector, finding.kind, action).inc()
        for report in verdict.reports:
            self.child(self.detector_runs, report.detector, report.status.value).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
