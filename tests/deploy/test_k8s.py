"""deploy/k8s: every manifest passes the Kubernetes schema (kubernetes-validate, strict),
and the pieces fit together and fit the code (settings, CLI, ports, /healthz)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tests.deploy.tools import (
    DEPLOY,
    ROOT,
    cli_commands,
    load_yaml,
    load_yaml_all,
    parse_cli,
    require_tool,
    settings_env_names,
)

K8S = DEPLOY / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
KUBE_VERSION = "1.30.0"  # oldest Kubernetes these manifests are meant for


def docs() -> list[dict]:
    return [d for p in MANIFESTS for d in load_yaml_all(p)]


def find(kind: str, name: str) -> dict:
    for d in docs():
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("kubernetes-validate"), "--strict", "--quiet",
                           "-k", KUBE_VERSION, *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_every_manifest_passes_the_kubernetes_schema():
    out = validate(*MANIFESTS)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_validator_rejects_a_wrong_manifest(tmp_path):
    dep = find("Deployment", "ecogrid")
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "x"
    dep["spec"]["replicas"] = "one"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dep))
    out = validate(bad)
    assert out.returncode != 0


def test_kustomization_lists_every_manifest_but_the_secret_example():
    kust = load_yaml(K8S / "kustomization.yaml")
    listed = set(kust["resources"])
    assert all((K8S / r).exists() for r in listed)
    expected = {p.name for p in MANIFESTS} - {"secret.example.yaml"}
    assert "ingest-workers.yaml" in expected
    assert listed == expected, f"deploy/k8s/kustomization.yaml resources should be {sorted(expected)}"


def _container(kind: str, name: str) -> dict:
    return find(kind, name)["spec"]["template"]["spec"]["containers"][0]


SERVE_DEPLOYMENTS = ("ecogrid", "ecogrid-api")  # the leader, the API's read replicas


def test_service_deployment_probes_healthz_on_its_port():
    for name in SERVE_DEPLOYMENTS:
        c = _container("Deployment", name)
        args = parse_cli(c["args"])
        assert args.command == "serve" and args.host == "0.0.0.0"
        port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
        assert port == args.port
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, (name, probe)
    from api.http.routes import system

    assert "/healthz" in {getattr(r, "path", None) for r in system.router.routes}


def test_configmap_and_secret_carry_only_real_settings():
    known = settings_env_names()
    cm = find("ConfigMap", "ecogrid-config")["data"]
    secret = find("Secret", "ecogrid-secrets")["stringData"]
    assert not set(cm) - known, sorted(set(cm) - known)
    assert not set(secret) - known, sorted(set(secret) - known)
    assert {"ECOGRID_JWT_SECRET", "ECOGRID_DATABASE_URL"} <= set(secret)
    assert not set(cm) & set(secret)
    for name in SERVE_DEPLOYMENTS:
        c = _container("Deployment", name)
        refs = {next(iter(e.values()))["name"] for e in c["envFrom"]}
        assert refs == {"ecogrid-config", "ecogrid-secrets"}
        assert not {e["name"] for e in c.get("env", [])} - known


def test_ingress_service_and_deployment_connect():
    ing = find("Ingress", "ecogrid")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = find("Service", backend["name"])
    port = next(p for p in svc["spec"]["ports"] if p["name"] == backend["port"]["name"])
    # The public entry balances over the API replicas, not the leader.
    dep = find("Deployment", "ecogrid-api")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    leader = find("Deployment", "ecogrid")["spec"]["template"]["metadata"]["labels"]
    assert not svc["spec"]["selector"].items() <= leader.items()
    names = {p["name"] for p in _container("Deployment", "ecogrid-api")["ports"]}
    assert port["targetPort"] in names
    ann = ing["metadata"]["annotations"]
    # WebSocket: idle connections stay open for an hour.
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(ann["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600


def _env(name: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container("Deployment", name).get("env", [])}


def test_the_leader_stays_one_pod_and_relays_its_events():
    dep = find("Deployment", "ecogrid")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert not [d for d in docs() if d["kind"] == "HorizontalPodAutoscaler"
                and d["spec"]["scaleTargetRef"]["name"] == "ecogrid"]
    env = _env("ecogrid")
    assert env["ECOGRID_MODE"] == "live" and env["ECOGRID_EVENTS_RELAY"] == "true"
    # The leader's own Service, which the replicas' ECOGRID_LEADER_URL names.
    url = urlsplit(_env("ecogrid-api")["ECOGRID_LEADER_URL"])
    svc = find("Service", url.hostname)
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    api = find("Deployment", "ecogrid-api")["spec"]["template"]["metadata"]["labels"]
    assert not svc["spec"]["selector"].items() <= api.items()
    port = next(p for p in svc["spec"]["ports"] if p["port"] == url.port)
    assert port["targetPort"] in {p["name"] for p in _container("Deployment", "ecogrid")["ports"]}
    # The replicas may reach it (NetworkPolicy).
    pol = find("NetworkPolicy", "ecogrid-api")
    assert pol["spec"]["podSelector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()
    peers = [f["podSelector"]["matchLabels"] for rule in pol["spec"]["ingress"]
             for f in rule["from"] if "podSelector" in f]
    assert any(p.items() <= api.items() for p in peers)


def test_api_replicas_scale_with_a_horizontal_pod_autoscaler():
    dep = find("Deployment", "ecogrid-api")
    env = _env("ecogrid-api")
    assert env["ECOGRID_MODE"] == "replica" and env["ECOGRID_LEADER_URL"].startswith("http://")
    from api.settings import load_settings

    load_settings(mode="replica", leader_url=env["ECOGRID_LEADER_URL"], jwt_secret="x")
    assert "replicas" not in dep["spec"]  # the autoscaler owns the count
    hpas = [d for d in docs() if d["kind"] == "HorizontalPodAutoscaler"
            and d["spec"]["scaleTargetRef"]["name"] == "ecogrid-api"]
    assert len(hpas) == 1
    hpa = hpas[0]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "ecogrid-api"}
    lo, hi = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    assert lo >= 2 and hi > lo
    cpu = [m["resource"] for m in hpa["spec"]["metrics"]
           if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and 0 < cpu[0]["target"]["averageUtilization"] <= 100
    # Utilization is relative to the request: every container must have one.
    for c in dep["spec"]["template"]["spec"]["containers"]:
        assert c["resources"]["requests"]["cpu"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    pdb = find("PodDisruptionBudget", "ecogrid-api")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable", 0) < lo


def _ingest_args(pod: str = "ecogrid-ingest-1") -> tuple[list[str], object]:
    args = _container("StatefulSet", "ecogrid-ingest")["args"]
    return args, parse_cli([a.replace("$(POD_NAME)", pod) for a in args])


def test_ingest_workers_are_a_shared_group_in_a_statefulset():
    sts = find("StatefulSet", "ecogrid-ingest")
    args, parsed = _ingest_args()
    assert parsed.command == "ingest"
    # Members of one shared-subscription group, not site partitions.
    assert parsed.shared == "ecogrid-ingest" and parsed.partition is None
    from adapters.history import store_name
    from adapters.ingest_worker import writer_id
    from adapters.mqtt.topics import validate_group

    validate_group(parsed.shared)
    # Every pod is its own MQTT session (the pod name), and that names its store.
    assert "$(POD_NAME)" in args and parsed.client_id == "ecogrid-ingest-1"
    env = {e["name"]: e for e in _container("StatefulSet", "ecogrid-ingest")["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    stores = {store_name(writer_id(shared_client_id=_ingest_args(f"ecogrid-ingest-{k}")[1]
                                   .client_id), 0) for k in range(3)}
    assert len(stores) == 3
    # The autoscaler owns the pod count: re-applying must not reset it.
    assert "replicas" not in sts["spec"]
    svc = find("Service", sts["spec"]["serviceName"])
    assert svc["spec"]["clusterIP"] == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    c = _container("StatefulSet", "ecogrid-ingest")
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
    assert port == parsed.metrics_port
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    # The history goes to the one telemetry store (ECOGRID_HISTORY_URL) on the shared
    # volume, not to a volume of the pod's own.
    assert _history_claim("StatefulSet", "ecogrid-ingest") == (HISTORY_CLAIM, False)
    assert "volumeClaimTemplates" not in sts["spec"]
    # The fleet comes from the registry (and follows its edits): no fixed --fleet/--sites,
    # and the registry's ECOGRID_DATABASE_URL reaches the pod.
    assert parsed.fleet is None and parsed.sites is None
    assert _pod_env("StatefulSet", "ecogrid-ingest")["ECOGRID_DATABASE_URL"]


HISTORY_CLAIM = "ecogrid-history"  # the PersistentVolumeClaim of the one telemetry store


def _pod_env(kind: str, name: str) -> dict[str, str]:
    """The ECOGRID_* variables a pod's first container gets: its ConfigMap and Secret
    (envFrom, in order), then its own env (which wins)."""
    c = _container(kind, name)
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            env.update(find("ConfigMap", src["configMapRef"]["name"])["data"])
        else:
            env.update(find("Secret", src["secretRef"]["name"])["stringData"])
    env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    return {k: v for k, v in env.items() if k.startswith("ECOGRID_")}


def _pod_settings(kind: str, name: str):
    """api.settings.Settings of a pod, read from its environment by the code itself."""
    from api.settings import load_settings

    known = settings_env_names()
    return load_settings(**{k.removeprefix("ECOGRID_").lower(): v
                            for k, v in _pod_env(kind, name).items() if k in known})


def _history_claim(kind: str, name: str) -> tuple[str, bool]:
    """(claim name, read-only) of the volume mounted at the pod's telemetry store root
    (Settings.history_root(): ECOGRID_HISTORY_URL, default $ECOGRID_DATA_DIR/history)."""
    root = _pod_settings(kind, name).history_root()
    spec = find(kind, name)["spec"]["template"]["spec"]
    mounts = [m for m in spec["containers"][0]["volumeMounts"]
              if root == Path(m["mountPath"]) or root.is_relative_to(m["mountPath"])]
    assert mounts, f"{kind} {name}: nothing is mounted at its telemetry store {root}"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))  # the innermost one
    volume = next((v for v in spec["volumes"] if v["name"] == mount["name"]), {})
    assert "persistentVolumeClaim" in volume, (
        f"{kind} {name}: the telemetry store {root} is on a volume of the pod's own "
        f"({mount['name']}), not the shared claim")
    return volume["persistentVolumeClaim"]["claimName"], bool(mount.get("readOnly"))


def test_the_leader_replicas_and_workers_share_the_one_telemetry_store():
    # One folder (ECOGRID_HISTORY_URL) on one claim that every node can mount read-write:
    # the workers write their stores there, the leader and the API replicas read them
    # (History merges the writers' stores) for /history, /analytics, reports, the planner.
    claim = find("PersistentVolumeClaim", HISTORY_CLAIM)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "ECOGRID_HISTORY_URL" in find("ConfigMap", "ecogrid-config")["data"]
    roots = {(kind, name): _pod_settings(kind, name).history_root()
             for kind, name in (("Deployment", "ecogrid"), ("Deployment", "ecogrid-api"),
                                ("StatefulSet", "ecogrid-ingest"))}
    assert len(set(roots.values())) == 1, roots
    assert _history_claim("Deployment", "ecogrid") == (HISTORY_CLAIM, False)
    assert _history_claim("StatefulSet", "ecogrid-ingest") == (HISTORY_CLAIM, False)
    assert _history_claim("Deployment", "ecogrid-api")[0] == HISTORY_CLAIM  # may be read-only
    # The workers write the store, so the leader reads what they write and writes none
    # itself (an embedded leader claims every site exclusively: no worker could start).
    assert _pod_settings("Deployment", "ecogrid").ingest == "workers"
    assert _pod_settings("StatefulSet", "ecogrid-ingest").history_root() == roots[
        ("Deployment", "ecogrid")]


def test_ingest_workers_scale_with_a_horizontal_pod_autoscaler():
    sts = find("StatefulSet", "ecogrid-ingest")
    hpas = [d for d in docs() if d["kind"] == "HorizontalPodAutoscaler"
            and d["spec"]["scaleTargetRef"]["name"] == "ecogrid-ingest"]
    assert len(hpas) == 1
    hpa = hpas[0]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["namespace"] == sts["metadata"]["namespace"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": sts["apiVersion"],
                                             "kind": "StatefulSet", "name": "ecogrid-ingest"}
    lo, hi = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    assert lo >= 2 and hi > lo
    cpu = [m["resource"] for m in hpa["spec"]["metrics"]
           if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and 0 < cpu[0]["target"]["averageUtilization"] <= 100
    # Utilization is relative to the request: the container must have one.
    assert _container("StatefulSet", "ecogrid-ingest")["resources"]["requests"]["cpu"]
    # Scaling down waits (no flapping).
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    # Only a shared group may be autoscaled: a partition's N would not follow the count.
    assert _ingest_args()[1].shared and not _ingest_args()[1].partition
    pdb = find("PodDisruptionBudget", "ecogrid-ingest")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable", 0) < lo


def test_ingest_worker_command_is_a_cli_call():
    args = _container("StatefulSet", "ecogrid-ingest")["args"]
    assert args[0] in cli_commands()
    parse_cli([a.replace("$(POD_NAME)", "ecogrid-ingest-0") for a in args])


def test_pods_run_as_the_image_user_with_a_read_only_root():
    uid = int(re.search(r"ARG UID=(\d+)", (ROOT / "Dockerfile").read_text()).group(1))
    for kind, name in (("Deployment", "ecogrid"), ("Deployment", "ecogrid-api"),
                       ("StatefulSet", "ecogrid-ingest")):
        spec = find(kind, name)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert c["resources"]["limits"]["memory"]
        # numba's cache directory is writable (an emptyDir seeded by the init container).
        mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert "/var/cache/ecogrid/numba" in mounts


def test_mosquitto_configmap_is_the_repo_config():
    cm = find("ConfigMap", "mosquitto-config")["data"]["mosquitto.conf"]
    assert cm == (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    sts = find("StatefulSet", "mosquitto")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in sts["containers"][0]["volumeMounts"]}
    assert f"password_file {mounts['credentials']}/passwd" in cm
    assert f"acl_file {mounts['credentials']}/acl" in cm


def test_kustomize_renders_a_valid_set(tmp_path):
    kubectl = require_tool("kubectl")
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {d["metadata"].get("namespace", "ecogrid") for d in rendered} == {"ecogrid"}
    images = {c["image"] for d in rendered if d["kind"] in ("Deployment", "StatefulSet")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert not any(i.startswith("ecogrid:") for i in images), "the images: override failed"
    path = tmp_path / "rendered.yaml"
    path.write_text(out.stdout)
    check = validate(path)
    assert check.returncode == 0, check.stdout + check.stderr
