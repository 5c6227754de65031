"""The hops one request must pass, in order, and the check that a trace has them all (`make verify`, `make up`,
`make run`, the tests).

The hops are data: a `Hop` names the service, span kind and span name it expects, and a list of hops is a path
(`KNATIVE_HOPS` for the cluster, `LOCAL_HOPS` for `make run` / `make up` with our local broker). `check` finds
the longest chain of spans matching the hops in order, each one under the one before (by parent, or by a span
link, through any spans in between), and names each hop it cannot place: missing when no span matches it at all,
chain broken when matching spans exist but none sits under the hop before.

Knative's spans, as matched here (the names are Knative's own: tests/fixtures/knative/otel-spans-1.22.json
records them with the source lines they come from, and tests/tools checks this list against it): the broker
ingress names its span `broker:<broker>.<namespace>` and the broker filter `trigger:<trigger>.<namespace>`, the
same on OpenCensus (<= 1.18) and OpenTelemetry (>= 1.19); their services are `broker.ingress` and
`broker.filter` (>= 1.19) or `broker-ingress.knative-eventing` and `broker-filter.knative-eventing` (<= 1.18).
The in-memory channel dispatcher reports as `inmemorychannel-dispatcher` (>= 1.19) or `imc-dispatcher`
(<= 1.18). The activator reports as `activator` (>= 1.19) or `activator-service` (<= 1.18). The queue-proxy
reports under the Knative Service's own name since 1.19 (the workload's name too), under its pod's name
(`first-00001-deployment-...`) before: its spans are told from the workload's by their instrumentation scope
(Jaeger's `otel.scope.name` tag), Go's otelhttp or `knative.dev/serving/pkg/queue`, never the workloads'
Python ones (`fastapi`, `first`...). Spans that arrive as Zipkin (<= 1.18) carry no scope. Span
names of the HTTP layers (`handle`, `queue`, `kncloudevents.receive`, ...) are not matched: they are Knative's
internals, and a hop is found through any spans in between.

When a check fails, `likely_causes` reads the trace's shape for the causes users meet most: hops that recorded
nothing while the context went on unchanged (tracing off: a Knative >= 1.19 component started before its
config), hops whose spans are gone while the rest hangs off a parent that is not in the trace (sampled out: a
tracing-sampling-rate of 0 or missing is NeverSample), and a trace that just ends (a hop that does not propagate).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tools.spans import Span

ROOT = Path(__file__).resolve().parent.parent


def _event_type() -> str:
    """The event type the Trigger of config/ routes on: what first sends (tests/config checks the two agree)."""
    trigger = yaml.safe_load((ROOT / "config" / "trigger.yaml").read_text())
    return str(trigger["spec"]["filter"]["attributes"]["type"])


EVENT_TYPE = _event_type()

BROWSER_HEADERS = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) make-run",
    "accept-language": "en-US,en;q=0.5",
}
"""The request that starts the journey: what the article's browser sent to first."""

# The span names Knative (and our local broker) give the Broker and Trigger of config/ (tests/config checks them).
BROKER_SPAN = r"^broker:default\.default$"
TRIGGER_SPAN = r"^trigger:first-to-second\.default$"


@dataclass(frozen=True)
class Hop:
    """One step of a request's path: a span whose service and name match these regular expressions."""

    label: str
    service: str = ".*"
    name: str = ".*"
    kind: str | None = None
    """SERVER, CLIENT, PRODUCER, CONSUMER or INTERNAL; None accepts any."""
    scope: str | None = None
    """A regular expression the span's instrumentation scope must match, when the span has one (spans that
    arrive as Zipkin, from Knative <= 1.18, have none)."""
    namespace: str | None = None
    """Where a Knative component runs, so its config-observability can be named when its spans are missing."""
    restart: str | None = None
    """What makes the component read config-observability again (>= 1.19 reads it only at start)."""

    def matches(self, span: Span) -> bool:
        scope = str(span.attributes.get("otel.scope.name") or span.attributes.get("otel.library.name") or "")
        return (
            (self.kind is None or span.kind == self.kind)
            and re.search(self.service, span.service) is not None
            and re.search(self.name, span.name) is not None
            and not (self.scope and scope and re.search(self.scope, scope) is None)
        )

    def describe(self) -> str:
        kind = f"{self.kind} " if self.kind else ""
        scope = f" from a scope matching /{self.scope}/" if self.scope else ""
        return f"{kind}span of service /{self.service}/ named /{self.name}/{scope}"


OTELHTTP_SCOPE = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
SERVING = "knative-serving"
EVENTING = "knative-eventing"


def _knative_front(service: str) -> tuple[Hop, Hop]:
    """The activator and the revision pod's queue-proxy, which Knative Serving puts in front of every request."""
    return (
        # Its SERVER span: the activator's other spans sit under it, and one request must not place both
        # activator hops (in a trace split in two, the second half would otherwise pass for the whole path).
        Hop(
            f"activator in front of {service}",
            service=r"^activator(-service)?$",
            kind="SERVER",
            namespace=SERVING,
            restart=f"kubectl -n {SERVING} rollout restart deployment/activator (make cluster does it)",
        ),
        Hop(
            f"queue-proxy in front of {service}",
            service=rf"^({service}|{service}-\d+-deployment-.+)$",
            # Go's otelhttp or the queue-proxy's own tracer: never the workload's Python scopes.
            scope=rf"^({re.escape(OTELHTTP_SCOPE)}|knative\.dev/serving/pkg/queue)$",
            namespace=SERVING,
            restart="a new revision (make deploy): the queue-proxy gets the config when its revision is created",
        ),
    )


SEND = Hop("first sends the event", service="^first$", kind="PRODUCER", name=rf"^send {re.escape(EVENT_TYPE)}$")
PROCESS = Hop(
    "second processes the event", service="^second$", kind="CONSUMER", name=rf"^process {re.escape(EVENT_TYPE)}$"
)

KNATIVE_HOPS: tuple[Hop, ...] = (
    *_knative_front("first"),
    SEND,
    Hop(
        "broker ingress accepts it",
        service=r"^(broker\.ingress|broker-ingress\.knative-eventing)$",
        name=BROKER_SPAN,
        scope=r"^knative\.dev/pkg/broker/ingress$",
        namespace=EVENTING,
        restart=f"kubectl -n {EVENTING} rollout restart deployment/mt-broker-ingress (make cluster does it)",
    ),
    # The channel between ingress and filter. Its spans are its HTTP server and client and the dispatch between;
    # any of them places it. Without this hop a dispatcher that records nothing would go unnoticed: it still
    # passes the context on (a no-op tracer keeps the incoming span context).
    Hop(
        "in-memory channel dispatcher passes it on",
        service=r"^(inmemorychannel-dispatcher|imc-dispatcher)$",
        scope=rf"^({re.escape(OTELHTTP_SCOPE)}|knative\.dev/eventing/pkg/kncloudevents)$",
        namespace=EVENTING,
        restart=f"kubectl -n {EVENTING} rollout restart deployment/imc-dispatcher (make cluster does it)",
    ),
    Hop(
        "broker filter delivers it (Trigger first-to-second)",
        service=r"^(broker\.filter|broker-filter\.knative-eventing)$",
        name=TRIGGER_SPAN,
        scope=r"^knative\.dev/pkg/broker/filter$",
        namespace=EVENTING,
        restart=f"kubectl -n {EVENTING} rollout restart deployment/mt-broker-filter (make cluster does it)",
    ),
    *_knative_front("second"),
    PROCESS,
)
"""first -> Broker -> second on Knative Serving + Eventing (the MT channel-based broker)."""

LOCAL_HOPS: tuple[Hop, ...] = (
    SEND,
    Hop("broker ingress accepts it", service="^broker$", kind="INTERNAL", name=BROKER_SPAN),
    Hop("broker delivers it (Trigger first-to-second)", service="^broker$", kind="INTERNAL", name=TRIGGER_SPAN),
    PROCESS,
)
"""first -> our local broker (python -m broker) -> second: `make run` and `make up`."""

HOP_SETS: dict[str, tuple[Hop, ...]] = {"knative": KNATIVE_HOPS, "local": LOCAL_HOPS}


def _ancestors(span: Span, by_id: dict[str, Span]) -> set[str]:
    """Ids of every span `span` descends from in this trace, through parents and span links."""
    seen: set[str] = set()
    todo = [span]
    while todo:
        current = todo.pop()
        for up in ([current.parent_id] if current.parent_id else []) + [sid for _, sid in current.links]:
            if up in by_id and up not in seen:
                seen.add(up)
                todo.append(by_id[up])
    return seen


def _best_chain(spans: Sequence[Span], hops: Sequence[Hop]) -> dict[int, Span]:
    """Hop index -> span for the longest chain that places hops in order, each span under the previous one.

    A small dynamic programme (a trace has tens of spans): ties go to the chain that starts earliest, so the
    root-most reading of the trace wins."""
    by_id = {s.span_id: s for s in spans}
    ancestors = {s.span_id: _ancestors(s, by_id) for s in spans}
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
    # best[(hop, span_id)] = (placed hops, start of the chain's first span, previous (hop, span_id) or None)
    best: dict[tuple[int, str], tuple[int, int, tuple[int, str] | None]] = {}
    for i, hop in enumerate(hops):
        for span in (s for s in ordered if hop.matches(s)):
            entry: tuple[int, int, tuple[int, str] | None] = (1, span.start_ns, None)
            for (j, prev_id), (count, first_start, _) in best.items():
                if j < i and prev_id in ancestors[span.span_id]:
                    candidate = (count + 1, first_start, (j, prev_id))
                    if (candidate[0], -candidate[1]) > (entry[0], -entry[1]):
                        entry = candidate
            best[(i, span.span_id)] = entry
    if not best:
        return {}
    key: tuple[int, str] | None = max(best, key=lambda k: (best[k][0], -best[k][1], k[0]))
    chain: dict[int, Span] = {}
    while key is not None:
        chain[key[0]] = by_id[key[1]]
        key = best[key][2]
    return chain


def _break_point(span: Span, by_id: dict[str, Span]) -> str:
    """Where the parent chain above `span` stops short of the trace's root."""
    top = span
    while top.parent_id in by_id:
        top = by_id[top.parent_id]
    if top.parent_id is None:
        return f"its ancestry ends at the root span '{top.name}' of {top.service}"
    return f"its ancestry stops at '{top.name}' of {top.service}, whose parent {top.parent_id} is not in the trace"


def check(spans: Sequence[Span], hops: Sequence[Hop]) -> list[str]:
    """Problems with `spans` as one trace through `hops`, in order; empty when the trace has the whole path."""
    if not spans:
        return ["no spans: the trace backend does not know this trace (yet)"]
    problems: list[str] = []
    trace_ids = sorted({s.trace_id for s in spans})
    if len(trace_ids) > 1:
        problems.append(f"the spans belong to {len(trace_ids)} traces ({', '.join(trace_ids)}), not one")
    chain = _best_chain(spans, hops)
    chained = {s.span_id for s in chain.values()}
    by_id = {s.span_id: s for s in spans}
    # (index in problems, the span that is off the chain, labels of later hops cut off along with it)
    breaks: list[tuple[int, Span, list[str]]] = []
    for i, hop in enumerate(hops):
        if i in chain:
            continue
        before = next((j for j in range(i - 1, -1, -1) if j in chain), None)
        after = next((j for j in range(i + 1, len(hops)) if j in chain), None)
        where = " ".join(
            part
            for part in (
                f"after '{hops[before].label}'" if before is not None else "",
                f"before '{hops[after].label}'" if after is not None else "",
            )
            if part
        )
        found = [s for s in spans if hop.matches(s) and s.span_id not in chained]
        if not found:
            problems.append(f"missing hop '{hop.label}': no {hop.describe()}" + (f" ({where})" if where else ""))
            continue
        # The candidate that comes after the last placed hop, if any: the one a reader would look at.
        floor = chain[before].start_ns if before is not None else 0
        span = min(found, key=lambda s: (s.start_ns < floor, s.start_ns))
        ancestors = _ancestors(span, by_id)
        owner = next((b for b in breaks if b[1].span_id in ancestors), None)
        if owner is not None:
            owner[2].append(hop.label)
            continue
        breaks.append((len(problems), span, []))
        problems.append(
            f"chain broken at hop '{hop.label}': span '{span.name}' of {span.service} is in the trace but not "
            f"{where or 'in the chain'}: {_break_point(span, by_id)}"
        )
    for index, _, cut in breaks:
        if cut:
            problems[index] += f"; cut off with it: {', '.join(repr(label) for label in cut)}"
    return problems


def _namespaces(hops: Sequence[Hop]) -> list[str]:
    return sorted({hop.namespace for hop in hops if hop.namespace})


def _sampling(namespaces: Sequence[str]) -> str:
    where = " and ".join(namespaces) or "the namespace of the missing hops"
    return (
        f"tracing-sampling-rate 0 or missing in config-observability of {where}: Knative >= 1.19 then samples "
        "nothing (NeverSample, not parent-based), records none of its spans and passes the context on marked not "
        "sampled, so the parent-based workloads after it drop theirs; a component at rate 1 records again. Fix: "
        'tracing-sampling-rate "1" and a restart (make cluster does both; make verify checks the value first)'
    )


def likely_causes(spans: Sequence[Span], hops: Sequence[Hop]) -> list[str]:
    """What usually makes a trace look like this one, when `check` finds problems: one line per cause, for the
    shapes users report (a trace split in two, missing after the broker, hops that vanish)."""
    if not spans:
        return [
            "the spans have not reached Jaeger yet: run make verify again in a minute",
            "the whole path was sampled out: "
            + _sampling([SERVING])
            + " (the activator is the first hop, so nothing after it is recorded)",
        ]
    chain = _best_chain(spans, hops)
    by_id = {s.span_id: s for s in spans}
    chained = {s.span_id for s in chain.values()}
    # As `check` reads them: missing when no span off the chain matches, broken when one does.
    missing = [
        i
        for i, hop in enumerate(hops)
        if i not in chain and not any(hop.matches(s) for s in spans if s.span_id not in chained)
    ]
    broken = [i for i, hop in enumerate(hops) if i not in chain and i not in missing]
    causes: list[str] = []
    # A span whose parent never arrived: a component made that parent and did not record it (or lost it). The
    # demo's trace has one root with no parent at all (Kourier does not trace).
    dangling = any(s.parent_id is not None and s.parent_id not in by_id for s in spans)
    gone = [hops[i] for i in missing]
    labels = ", ".join(repr(hop.label) for hop in gone)
    if gone and dangling:
        causes.append(
            f"{labels} made spans that never reached Jaeger, and the context went on with their ids (the rest "
            f"hangs off a parent that is not in the trace): sampled out, {_sampling(_namespaces(gone))}; or their "
            "export failed (the component cannot reach tracing-endpoint: read its log)"
        )
    elif dangling:
        causes.append(
            "a span's parent is not in the trace: its spans were lost on the way to Jaeger (the component cannot "
            "reach tracing-endpoint: read its log) or have not arrived yet (run make verify again)"
        )
    placed_after = [i for i in chain if missing and i > min(missing)]
    if gone and not dangling and placed_after:
        restarts = "; ".join(dict.fromkeys(hop.restart for hop in gone if hop.restart))
        causes.append(
            f"{labels} left no span where expected, yet the context went on unchanged: tracing is off in that "
            "component (a no-op tracer keeps the incoming context). On Knative >= 1.19 it reads "
            "config-observability only when it starts (the queue-proxy: when its revision is created), so it "
            f"started before tracing was switched on. Fix: {restarts or 'restart it'}. Or a Knative release "
            "renamed the span (KNATIVE_HOPS in tools/hops.py says what is expected)"
        )
    if gone and not dangling and not placed_after and not broken:
        causes.append(
            f"the trace ends before {labels}: the next hop did not propagate the context, so the rest is another "
            "trace (make run UNTRACED_HOP=1 shows one; find it in Jaeger by the event id), or a component after "
            "the last hop found sampled it out (" + _sampling(_namespaces(gone)) + ")"
        )
    return causes


def summary(hops: Sequence[Hop]) -> str:
    return " -> ".join(hop.label for hop in hops)


# When a local trace has fully arrived, for waiting on it (`make run`, the tests, the workshop). Spans arrive in
# batches, and a parent ends (and is exported) after its children, so "first's send, the broker's spans and
# second's process are there" is not yet "the trace is whole".


def has_every_hop(spans: Sequence[Span], hops: Sequence[Hop] = LOCAL_HOPS) -> bool:
    """Some span matches each hop (in whatever traces `spans` come from)."""
    return all(any(hop.matches(span) for span in spans) for hop in hops)


def is_whole(trace: Sequence[Span]) -> bool:
    """One trace with exactly one span whose parent has not arrived, and that span is a SERVER span: the request's
    entry, whose parent, if it has one, is the caller's. Any other orphan means a parent is still on its way."""
    ids = {span.span_id for span in trace}
    orphans = [span for span in trace if span.parent_id not in ids]
    return len(orphans) == 1 and orphans[0].kind == "SERVER"


def is_complete(trace: Sequence[Span]) -> bool:
    """The trace holds every local hop and every span's parent has arrived."""
    return has_every_hop(trace) and is_whole(trace)
