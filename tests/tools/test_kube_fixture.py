"""tools/kube_fixture.py over real HTTP: what client-go's informers, leader election and status patches ask of
it (list, watch, WatchList's initial events, selectors, create, update, patch), and a clear refusal of what it
does not serve. tests/knative_real runs Knative's own binaries against it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import poll_until
from tools.kube_fixture import Addresses, KubeFixture, cluster_objects
from tools.stack import ROOT

CONFIGMAPS = "/api/v1/namespaces/knative-eventing/configmaps"
BROKERS = "/apis/eventing.knative.dev/v1/brokers"
IMCS = "/apis/messaging.knative.dev/v1/namespaces/default/inmemorychannels"


@pytest.fixture
def fixture() -> Iterator[KubeFixture]:
    api = KubeFixture().start()
    addresses = Addresses(
        broker_ingress="http://broker-ingress.knative-eventing.svc.cluster.local",
        broker_filter="http://broker-filter.knative-eventing.svc.cluster.local",
        channel="http://default-kne-trigger-kn-channel.default.svc.cluster.local",
        subscriber="http://second.default.svc.cluster.local",
        otlp_endpoint="http://127.0.0.1:4318/v1/traces",
    )
    cluster_objects(api, ROOT / "config", addresses)
    yield api
    api.stop()


def test_the_broker_is_config_s_with_the_statuses_the_controllers_write(fixture: KubeFixture) -> None:
    listed = httpx.get(fixture.url + BROKERS, timeout=5).json()
    assert listed["kind"] == "BrokerList"
    [broker] = listed["items"]
    assert (broker["metadata"]["namespace"], broker["metadata"]["name"]) == ("default", "default")
    assert (
        broker["status"]["address"]["url"] == "http://broker-ingress.knative-eventing.svc.cluster.local/default/default"
    )
    channel = "http://default-kne-trigger-kn-channel.default.svc.cluster.local"
    assert broker["status"]["annotations"]["knative.dev/channelAddress"] == channel
    trigger = httpx.get(
        fixture.url + "/apis/eventing.knative.dev/v1/namespaces/default/triggers/first-to-second"
    ).json()
    assert trigger["status"]["subscriberUri"] == "http://second.default.svc.cluster.local"
    [imc] = httpx.get(fixture.url + IMCS, timeout=5).json()["items"]
    [subscriber] = imc["spec"]["subscribers"]
    assert subscriber["subscriberUri"].endswith(f"/triggers/default/first-to-second/{trigger['metadata']['uid']}")


def test_config_observability_is_config_tracing_s_with_the_receiver_as_endpoint(fixture: KubeFixture) -> None:
    observability = httpx.get(fixture.url + CONFIGMAPS + "/config-observability", timeout=5).json()
    assert observability["data"]["tracing-protocol"] == "http/protobuf"
    assert observability["data"]["tracing-sampling-rate"] == "1"
    assert observability["data"]["tracing-endpoint"] == "http://127.0.0.1:4318/v1/traces"


def test_selectors_filter_lists(fixture: KubeFixture) -> None:
    def names(query: str) -> list[str]:
        return [o["metadata"]["name"] for o in httpx.get(fixture.url + CONFIGMAPS + query, timeout=5).json()["items"]]

    assert "config-observability" in names("")
    assert names("?labelSelector=networking.knative.dev/trust-bundle%3Dtrue") == []
    assert names("?labelSelector=knative.dev/config-category%3Deventing") == ["config-observability"]
    assert names("?labelSelector=knative.dev/config-category%20in%20(eventing,serving)") == ["config-observability"]
    assert "config-observability" not in names("?labelSelector=!knative.dev/config-category")
    assert names("?fieldSelector=metadata.name%3Dconfig-logging") == ["config-logging"]


def test_a_missing_object_is_a_kubernetes_not_found(fixture: KubeFixture) -> None:
    answer = httpx.get(fixture.url + CONFIGMAPS + "/no-such-map", timeout=5)
    assert answer.status_code == 404
    assert (answer.json()["kind"], answer.json()["reason"]) == ("Status", "NotFound")
    unserved = httpx.get(fixture.url + "/apis/example.com/v1/widgets", timeout=5)
    assert unserved.status_code == 404 and "does not serve" in unserved.json()["message"]


def test_create_update_and_patch_are_kept_and_conflicts_refused(fixture: KubeFixture) -> None:
    maps = fixture.url + "/api/v1/namespaces/default/configmaps"
    created = httpx.post(maps, json={"metadata": {"name": "one"}, "data": {"holder": "a"}}, timeout=5)
    assert created.status_code == 201
    assert httpx.post(maps, json={"metadata": {"name": "one"}}, timeout=5).status_code == 409
    stale = {**created.json(), "metadata": {**created.json()["metadata"], "resourceVersion": "0"}}
    assert httpx.put(maps + "/one", json=stale, timeout=5).status_code == 409
    renewed = {**created.json(), "data": {"holder": "b"}}
    assert httpx.put(maps + "/one", json=renewed, timeout=5).json()["data"]["holder"] == "b"
    assert httpx.get(maps + "/one", timeout=5).json()["data"]["holder"] == "b"
    # The IMC dispatcher's status patch (a JSON patch, as knative.dev/pkg's duck.CreatePatch makes).
    patch = [{"op": "add", "path": "/status/subscribers", "value": [{"uid": "u", "ready": "True"}]}]
    patched = httpx.patch(
        fixture.url + IMCS + "/default-kne-trigger/status",
        content=json.dumps(patch),
        headers={"Content-Type": "application/json-patch+json"},
        timeout=5,
    )
    assert patched.json()["status"]["subscribers"] == [{"uid": "u", "ready": "True"}]


def test_protobuf_is_refused_by_name(fixture: KubeFixture) -> None:
    answer = httpx.post(
        fixture.url + "/apis/coordination.k8s.io/v1/namespaces/knative-eventing/leases",
        content=b"k8s\x00...",
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
        timeout=5,
    )
    assert answer.status_code == 415 and "reads JSON only" in answer.json()["message"]


def test_a_watch_sends_initial_events_then_changes(fixture: KubeFixture) -> None:
    """client-go >= 1.35's WatchList: each object ADDED, the bookmark that ends them, then what changes."""
    events: list[dict[str, object]] = []
    query = "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=2"

    def watch() -> None:
        with httpx.stream("GET", fixture.url + CONFIGMAPS + query, timeout=10) as stream:
            for line in stream.iter_lines():
                events.append(json.loads(line))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        created = {"metadata": {"name": "late"}, "data": {}}
        poll_until(lambda: any(e["type"] == "BOOKMARK" for e in events), 5, "the watch's initial-events bookmark")
        assert httpx.post(fixture.url + CONFIGMAPS, json=created, timeout=5).status_code == 201
    finally:
        watcher.join()
    kinds = [str(e["type"]) for e in events]
    bookmark = kinds.index("BOOKMARK")
    assert set(kinds[:bookmark]) == {"ADDED"} and bookmark >= 4, kinds
    ended = events[bookmark]["object"]
    assert isinstance(ended, dict) and ended["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert [e["object"]["metadata"]["name"] for e in events[bookmark + 1 :]] == ["late"]  # type: ignore[index]


def test_the_kubeconfig_points_at_it_without_credentials(fixture: KubeFixture, tmp_path: Path) -> None:
    config = json.loads(fixture.kubeconfig(tmp_path / "kubeconfig").read_text())
    assert config["clusters"][0]["cluster"]["server"] == fixture.url
    assert config["users"][0]["user"] == {}
