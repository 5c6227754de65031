"""`make run KNATIVE=real`: first and second each behind Knative's real queue-proxy, the event through Knative's
real broker ingress, IMC dispatcher and broker filter, no cluster (docs/knative-real.md).

Each of the five "pods" gets a network namespace of its own on one bridge (the cluster network): the
queue-proxy's admin (8022) and metrics (9090) ports are fixed, and queue-proxy reaches its app on the pod's own
127.0.0.1, as in a Knative pod. The eventing binaries read their Broker, Trigger, InMemoryChannel and
ConfigMaps from the fixture API (tools/kube_fixture.py) in place of a kube-apiserver and Knative's controllers.
Every span goes to one OTLP receiver on the bridge's host address. Needs root (`ip netns`) and
`make knative-binaries`; what is not real: no kube-apiserver, no controllers, no activator.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

import httpx
import yaml

from tools.hops import BROWSER_HEADERS, KNATIVE_HOPS, Hop, check
from tools.kube_fixture import Addresses, KubeFixture, cluster_objects, observability_config
from tools.otlp_receiver import Receiver
from tools.spans import Span, by_trace
from tools.stack import ROOT, service_environment
from tools.trace_tree import render

BINARIES = ("queue-proxy", "broker-ingress", "broker-filter", "imc-dispatcher")
NAMESPACE = "default"
# The ports Knative's manifests give each container (serving's queue.go constants, eventing's deployments).
QUEUE_PORT = 8012
QUEUE_TLS_PORT = 8112
USER_PORT = 8080
EVENTING_PORT = 8080
PODS = ("first", "second", "broker-ingress", "broker-filter", "imc-dispatcher")
EVENTING_SERVICES = {"broker.ingress", "broker.filter", "inmemorychannel-dispatcher"}
"""The eventing binaries' service.name (eventing cmd/*/main.go otel.SetupObservabilityOrDie, sharedmain)."""

REAL_HOPS: tuple[Hop, ...] = tuple(hop for hop in KNATIVE_HOPS if not hop.label.startswith("activator"))
"""KNATIVE_HOPS without the activator: with no cluster there is no activator (it needs Revisions and Endpoints
from a real API and the cluster's networking), and a Knative route reaches a warm pod's queue-proxy directly."""


class Unavailable(Exception):
    """What this machine lacks for the real data plane, and the command that fixes it."""


def bin_dir() -> Path:
    """The binaries `make knative-binaries` built (the Makefile passes KNATIVE_BIN for the pinned versions)."""
    configured = os.environ.get("KNATIVE_BIN")
    if not configured:
        raise Unavailable("KNATIVE_BIN is not set: run this through `make run KNATIVE=real`, which sets it")
    return Path(configured)


def preflight(binaries: Path) -> None:
    """Fail fast, naming the fix, when the real data plane cannot run here."""
    if sys.platform != "linux":
        raise Unavailable("the real data plane runs in Linux network namespaces: use Linux (or make cluster)")
    if os.geteuid() != 0:
        raise Unavailable(
            "the real data plane makes network namespaces (ip netns), which needs root: sudo make run KNATIVE=real"
        )
    for command, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(command) is None:
            raise Unavailable(f"no `{command}` command: install it (apt-get install {package})")
    missing = [name for name in BINARIES if not (binaries / name).is_file()]
    if missing:
        raise Unavailable(f"no {', '.join(missing)} in {binaries}: build them with `make knative-binaries` first")


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.213.0.0/16 that no interface or route here uses yet."""
    used = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True)
    taken = used.stdout + subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    for _ in range(200):
        subnet = ipaddress.IPv4Network(f"10.213.{random.randrange(1, 255)}.0/24")  # noqa: S311 (not a secret)
        if f"10.213.{subnet.network_address.packed[2]}." not in taken:
            return subnet
    raise Unavailable("no free /24 in 10.213.0.0/16 for the pods' network")


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Network:
    """A bridge with the host's address (.1) and one network namespace per pod (.2 on), removed by `remove`."""

    tag: str
    subnet: ipaddress.IPv4Network
    pods: dict[str, str] = field(default_factory=dict)
    """Pod -> its address."""

    @property
    def host(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def namespace(self, pod: str) -> str:
        return f"{self.tag}-{pod}"

    @classmethod
    def create(cls, pods: tuple[str, ...]) -> Network:
        network = cls(tag=f"kt{os.getpid()}", subnet=_free_subnet())
        try:
            _ip("link", "add", network.bridge, "type", "bridge")
            _ip("addr", "add", f"{network.host}/24", "dev", network.bridge)
            _ip("link", "set", network.bridge, "up")
            for index, pod in enumerate(pods):
                address = str(network.subnet.network_address + 2 + index)
                namespace, veth = network.namespace(pod), f"{network.tag}v{index}"
                _ip("netns", "add", namespace)
                network.pods[pod] = address
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                _ip("link", "set", veth, "master", network.bridge, "up")
                _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
                _ip("-n", namespace, "link", "set", "eth0", "up")
                _ip("-n", namespace, "link", "set", "lo", "up")
        except RuntimeError:
            network.remove()
            raise
        return network

    def publish(self, services: dict[str, tuple[str, int]]) -> None:
        """Make each Service's cluster name (host -> (pod, target port)) reach its pod from every pod, as cluster
        DNS and kube-proxy do: the name resolves to the pod's address (`ip netns exec` puts /etc/netns/<ns>/hosts
        in place of /etc/hosts) and port 80 there is rewritten to the target port (a DNAT rule in the pod's own
        network namespace)."""
        hosts = "127.0.0.1 localhost\n" + "".join(f"{self.pods[pod]} {host}\n" for host, (pod, _) in services.items())
        for pod in self.pods:
            folder = Path("/etc/netns") / self.namespace(pod)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text(hosts)
            for target, port in set(services.values()):
                address = self.pods[target]
                rule = ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", address, "--dport", "80"]
                command = ["ip", "netns", "exec", self.namespace(pod), "iptables", *rule]
                result = subprocess.run(
                    [*command, "-j", "DNAT", "--to-destination", f"{address}:{port}"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if result.returncode != 0:
                    raise RuntimeError(f"iptables in {self.namespace(pod)}: {result.stderr.strip()}")

    def remove(self) -> None:
        """Deleting a namespace deletes its end of the veth pair, and with it the host's end, and its rules."""
        for pod in self.pods:
            subprocess.run(["ip", "netns", "del", self.namespace(pod)], capture_output=True, check=False)
            shutil.rmtree(Path("/etc/netns") / self.namespace(pod), ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    @staticmethod
    def remove_stale() -> list[str]:
        """Remove what runs killed before they could clean up left (kt<pid>-<pod> whose process is gone); the
        tags removed."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        tags = {m[1] for m in re.finditer(r"^(kt(\d+))-\S+", listed, re.M) if not Path(f"/proc/{m[2]}").exists()}
        for tag in sorted(tags):
            stale = Network(tag=tag, subnet=ipaddress.IPv4Network("10.213.0.0/24"))
            stale.pods = dict.fromkeys((m[1] for m in re.finditer(rf"^{tag}-(\S+)", listed, re.M)), "")
            for pod in stale.pods:
                # The binaries and apps that run lived on when it was killed; nothing will drain them now.
                pids = subprocess.run(
                    ["ip", "netns", "pids", stale.namespace(pod)], capture_output=True, text=True, check=False
                )
                for pid in pids.stdout.split():
                    with suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            stale.remove()
        return sorted(tags)


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _queue_proxy_env(service: str, address: str, otlp_endpoint: str) -> dict[str, str]:
    """The environment Knative Serving gives the queue-proxy container of `service`'s first revision
    (serving pkg/reconciler/revision/resources/queue.go, makeQueueContainer), with config/tracing's
    config-observability for knative-serving as OBSERVABILITY_CONFIG and its endpoint the demo's receiver."""
    tracing = observability_config(ROOT / "config", "knative-serving")["data"]
    observability = {
        "tracing": {
            "protocol": tracing["tracing-protocol"],
            "endpoint": f"{otlp_endpoint}/v1/traces",
            "samplingRate": float(tracing["tracing-sampling-rate"]),
        }
    }
    revision = f"{service}-00001"
    return {
        "SERVING_NAMESPACE": NAMESPACE,
        "SERVING_SERVICE": service,
        "SERVING_CONFIGURATION": service,
        "SERVING_REVISION": revision,
        "QUEUE_SERVING_PORT": str(QUEUE_PORT),
        "QUEUE_SERVING_TLS_PORT": str(QUEUE_TLS_PORT),
        "CONTAINER_CONCURRENCY": "0",
        "REVISION_TIMEOUT_SECONDS": "300",
        "REVISION_RESPONSE_START_TIMEOUT_SECONDS": "0",
        "REVISION_IDLE_TIMEOUT_SECONDS": "0",
        "SERVING_POD": f"{revision}-deployment-local",
        "SERVING_POD_IP": address,
        "SERVING_LOGGING_CONFIG": "",
        "SERVING_LOGGING_LEVEL": "info",
        "USER_PORT": str(USER_PORT),
        "SYSTEM_NAMESPACE": "knative-serving",
        # Serving's default readiness probe: a TCP connect to the user container's port.
        "SERVING_READINESS_PROBE": json.dumps(
            {"tcpSocket": {"port": USER_PORT, "host": "127.0.0.1"}, "successThreshold": 1}
        ),
        "HOST_IP": address,
        "ENABLE_HTTP2_AUTO_DETECTION": "false",
        "ENABLE_HTTP_FULL_DUPLEX": "false",
        "ENABLE_MULTI_CONTAINER_PROBES": "false",
        "OBSERVABILITY_CONFIG": json.dumps(observability),
    }


def _eventing_env(pod: str, container: str, kubeconfig: Path) -> dict[str, str]:
    """The environment eventing's deployments give each container (config/brokers/mt-channel-broker/deployments,
    config/channels/in-memory-channel/deployments), and the fixture API's kubeconfig."""
    env = {
        "SYSTEM_NAMESPACE": "knative-eventing",
        "POD_NAME": f"{pod}-local",
        "CONTAINER_NAME": container,
        "CONFIG_LOGGING_NAME": "config-logging",
        "CONFIG_OBSERVABILITY_NAME": "config-observability",
        "METRICS_DOMAIN": "knative.dev/internal/eventing",
        "INGRESS_PORT": str(EVENTING_PORT),
        "FILTER_PORT": str(EVENTING_PORT),
        "MAX_IDLE_CONNS": "1000",
        "MAX_IDLE_CONNS_PER_HOST": "1000",
        "KUBECONFIG": str(kubeconfig),
    }
    if pod != "imc-dispatcher":
        # The broker's deployments set their pod's namespace; the dispatcher's does not (with NAMESPACE it would
        # serve only namespace-scoped channels: cmd/in_memory/channel_dispatcher/main.go).
        env["NAMESPACE"] = "knative-eventing"
    return env


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class DataPlane:
    """Everything started by `running`: where to send the request, and where its spans land."""

    network: Network
    receiver: Receiver
    fixture: KubeFixture
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def first_url(self) -> str:
        return f"http://{self.network.pods['first']}:{QUEUE_PORT}"

    def start(self, pod: str, name: str, command: list[str], env: dict[str, str]) -> Process:
        log_path = self.log_dir / f"{name}.log"
        out: IO[bytes] = log_path.open("wb")
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.network.namespace(pod), *command],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops these in order
        )
        started = Process(name, process, log_path)
        self.processes.append(started)
        return started

    def wait(self, what: str, watched: list[Process], condition: Callable[[], bool], timeout: float = 60.0) -> None:
        """Until `condition` holds; fail with the logs of `watched` if one of them exits first or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = [p for p in watched if p.process.poll() is not None]
            if exited:
                gone = exited[0]
                raise RuntimeError(
                    f"{gone.name} exited ({gone.process.returncode}) before {what}:\n{gone.log()[-3000:]}"
                )
            if condition():
                return
            time.sleep(0.1)
        logs = "\n".join(f"--- {p.name} ({p.log_path}):\n{p.log()[-2000:]}" for p in watched)
        raise RuntimeError(f"Timed out after {timeout:.0f}s waiting for: {what}\n{logs}")

    def stop(self) -> None:
        """SIGTERM all (each binary drains for its own grace period), then SIGKILL what is left after 5 s: nothing
        here carries requests any more, and queue-proxy alone would drain for 30 s."""
        for started in reversed(self.processes):
            if started.process.poll() is None:
                started.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for started in reversed(self.processes):
            try:
                started.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                started.process.kill()
                started.process.wait()


@contextmanager
def running(binaries: Path, log_dir: Path | None = None) -> Iterator[DataPlane]:
    """The whole data plane, ready for a request; everything stopped and removed on exit (Ctrl-C too)."""
    preflight(binaries)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="knative-real-"))
    with ExitStack() as cleanup:
        for tag in Network.remove_stale():
            print(f"removed the network namespaces and bridge a killed run left ({tag}-*)", file=sys.stderr)
        network = Network.create(PODS)
        cleanup.callback(network.remove)
        receiver = Receiver(network.host).start()
        cleanup.callback(receiver.stop)
        otlp = f"http://{network.host}:{receiver.port}"
        fixture = KubeFixture(network.host).start()
        cleanup.callback(fixture.stop)
        pods = network.pods
        broker = yaml.safe_load((ROOT / "config" / "broker.yaml").read_text())["metadata"]
        # The Services' cluster names, as Knative's controllers write them into the objects' statuses.
        services = {
            "broker-ingress.knative-eventing.svc.cluster.local": ("broker-ingress", EVENTING_PORT),
            "broker-filter.knative-eventing.svc.cluster.local": ("broker-filter", EVENTING_PORT),
            f"{broker['name']}-kne-trigger-kn-channel.{broker['namespace']}.svc.cluster.local": (
                "imc-dispatcher",
                EVENTING_PORT,
            ),
            f"second.{NAMESPACE}.svc.cluster.local": ("second", QUEUE_PORT),
            f"first.{NAMESPACE}.svc.cluster.local": ("first", QUEUE_PORT),
        }
        network.publish(services)
        ingress_host, filter_host, channel_host, second_host, _ = services
        addresses = Addresses(
            broker_ingress=f"http://{ingress_host}",
            broker_filter=f"http://{filter_host}",
            channel=f"http://{channel_host}",
            subscriber=f"http://{second_host}",
            otlp_endpoint=f"{otlp}/v1/traces",
        )
        cluster_objects(fixture, ROOT / "config", addresses)
        kubeconfig = fixture.kubeconfig(log_dir / "kubeconfig")
        plane = DataPlane(network, receiver, fixture, log_dir)
        cleanup.callback(plane.stop)

        dispatcher = plane.start(
            "imc-dispatcher",
            "imc-dispatcher",
            # One replica, no leader election: client-go writes Leases as protobuf, which the fixture API does not
            # decode (knative.dev/pkg sharedmain's own switch; a lone replica would lead anyway).
            [str(binaries / "imc-dispatcher"), "--disable-ha"],
            _eventing_env("imc-dispatcher", "dispatcher", kubeconfig),
        )
        filter_ = plane.start(
            "broker-filter",
            "broker-filter",
            [str(binaries / "broker-filter")],
            _eventing_env("broker-filter", "filter", kubeconfig),
        )
        ingress = plane.start(
            "broker-ingress",
            "broker-ingress",
            [str(binaries / "broker-ingress")],
            _eventing_env("broker-ingress", "ingress", kubeconfig),
        )
        apps: dict[str, Process] = {}
        proxies: dict[str, Process] = {}
        for service in ("second", "first"):
            app_env = {
                # What the image sets (its Dockerfile's ENV), then what Knative adds.
                **service_environment(service),
                "HOST": "127.0.0.1",
                "PORT": str(USER_PORT),
                "OTEL_SERVICE_NAME": service,
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
                # What Knative Serving sets in the user container, and the SinkBinding's K_SINK for first.
                "K_SERVICE": service,
                "K_CONFIGURATION": service,
                "K_REVISION": f"{service}-00001",
                "K_SINK": f"{addresses.broker_ingress}/{broker['namespace']}/{broker['name']}",
            }
            apps[service] = plane.start(service, service, [sys.executable, "-m", service], app_env)
            proxies[service] = plane.start(
                service,
                f"{service}-queue-proxy",
                [str(binaries / "queue-proxy")],
                _queue_proxy_env(service, pods[service], otlp),
            )

        for name, started in (("broker-ingress", ingress), ("broker-filter", filter_)):
            where = pods[name]
            plane.wait(
                f"{name} to listen on {where}:{EVENTING_PORT}", [started], partial(_listening, where, EVENTING_PORT)
            )

        def channel_ready() -> bool:
            # The dispatcher writes the subscribers' status once it has set up the channel's fan-out
            # (pkg/reconciler/inmemorychannel/dispatcher/inmemorychannel.go patchSubscriberStatus).
            imc = fixture.store.get(
                "apis/messaging.knative.dev/v1", "inmemorychannels", NAMESPACE, f"{broker['name']}-kne-trigger"
            )
            return bool(imc and imc.get("status", {}).get("subscribers"))

        plane.wait("the IMC dispatcher to take on the broker's channel", [dispatcher], channel_ready)
        for service in ("second", "first"):
            plane.wait(
                f"{service}'s queue-proxy to report {service} ready (on its pod's 127.0.0.1:{USER_PORT})",
                [apps[service], proxies[service]],
                partial(_ready, pods[service]),
            )
        receiver.clear()  # start-up leaves no spans of interest
        yield plane


def _ready(address: str) -> bool:
    """The kubelet's readiness probe of a revision pod, as Serving declares it on the queue-proxy container:
    queue-proxy answers it, untraced, with 200 once the app's port takes connections (serving
    pkg/queue/health/handler.go ProbeHandler, reached through the drainer for a kube-probe/ user agent)."""
    headers = {"K-Network-Probe": "queue", "User-Agent": "kube-probe/1.35"}
    try:
        probe = httpx.get(f"http://{address}:{QUEUE_PORT}/", headers=headers, timeout=1)
    except httpx.HTTPError:
        return False
    return probe.status_code == 200


def is_journey_done(spans: list[Span]) -> bool:
    """One trace holds second's CONSUMER span, every span's parent has arrived (parents end last), and each
    eventing component's outermost span, kncloudevents.receive, which ends after the component's other spans and
    hangs beside them, not above them."""
    for trace in by_trace(spans).values():
        ids = {span.span_id for span in trace}
        consumed = any(REAL_HOPS[-1].matches(span) for span in trace)
        components = {span.service for span in trace if span.service in EVENTING_SERVICES}
        received = {span.service for span in trace if span.name == "kncloudevents.receive"}
        if consumed and sum(1 for span in trace if span.parent_id not in ids) == 1 and components <= received:
            return True
    return False


def request(plane: DataPlane, timeout: float = 30.0) -> list[Span]:
    """Send the article's request to first's queue-proxy and return its trace once it has fully arrived."""
    response = httpx.get(f"{plane.first_url}/", headers=BROWSER_HEADERS, timeout=30)
    response.raise_for_status()
    spans = plane.receiver.wait_for(is_journey_done, timeout)
    done = [trace for trace in by_trace(spans).values() if is_journey_done(trace)]
    if not done:
        raise TimeoutError(
            f"Timed out after {timeout:.0f}s waiting for: the request's whole trace (logs in {plane.log_dir})"
        )
    return done[0]


def main(once: bool, switches: list[str]) -> int:
    """`make run KNATIVE=real`: start everything, send one request, print its tree; then wait for Ctrl-C.
    `switches`: the other workshop switches that are on, which this path does not take (yet)."""
    if switches:
        print(
            f"error: KNATIVE=real runs the plain path only; drop the other switches ({'; '.join(switches)})",
            file=sys.stderr,
        )
        return 2
    try:
        binaries = bin_dir()
        preflight(binaries)
    except Unavailable as unavailable:
        print(f"error: {unavailable}", file=sys.stderr)
        return 2
    print("starting Knative's data plane (queue-proxy x2, broker ingress, IMC dispatcher, broker filter) ...")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with running(binaries) as plane:
            for pod, address in plane.network.pods.items():
                print(f"  {pod:15} {address}  (network namespace {plane.network.namespace(pod)})")
            print(f"  logs in {plane.log_dir}; spans at http://{plane.network.host}:{plane.receiver.port}/spans\n")
            print(f"GET {plane.first_url}/ (first's queue-proxy, as the article's browser did)\n")
            trace = request(plane)
            print(render(trace))
            problems = check(trace, REAL_HOPS)
            print(
                "\nhops (make verify's Knative check, activator excepted): "
                + ("all there" if not problems else "FAILED")
            )
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            if problems:
                return 1
            if not once:
                print(f"\nSend more:  curl -i {plane.first_url}/   ·  Ctrl-C stops.")
                seen = {trace[0].trace_id}
                while not stop.wait(1.0):
                    for trace_id, more in by_trace(plane.receiver.spans()).items():
                        if trace_id not in seen and is_journey_done(more):
                            seen.add(trace_id)
                            print("\n" + render(more))
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError, httpx.HTTPError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        print("\nstopping: processes, network namespaces and the bridge removed")
    return 0
