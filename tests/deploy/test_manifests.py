"""deploy/: every overlay builds with kustomize, validates against the Kubernetes schemas of OpenShift
4.16 (Kubernetes 1.29) and of a current release, Routes against OpenShift's Route API, passes the
policy linter, fits the restricted pod security profile, and agrees with what the launcher needs."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fakemodels import make
from glm_image_sglang import models
from glm_image_sglang.plan import Gpu, Machine, make_plan
from glm_image_sglang.settings import GatewaySettings, Settings

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
OVERLAYS = sorted(p.parent.relative_to(DEPLOY).as_posix() for p in DEPLOY.glob("*/*/kustomization.yaml")
                  if p.parent.parent.name in ("openshift", "kubernetes", "scale-out"))  # fmt: skip
ALL = [*OVERLAYS, "storage"]
KUBERNETES_VERSIONS = ["1.29.0", "1.33.0"]  # OpenShift 4.16 (oldest in support), and a current one
H100 = 81559 * 1024 * 1024
ROUTE_SCHEMA = json.loads((Path(__file__).parent / "route.openshift.io-v1.schema.json").read_text())
UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    proc = subprocess.run([str(BIN / "kubectl"), "kustomize", str(DEPLOY / overlay)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in render(overlay) if d["kind"] == kind]


def pod_specs(overlay: str) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in of_kind(overlay, "StatefulSet")] + [
        d["spec"] for d in of_kind(overlay, "Pod")
    ]


def server(overlay: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    (workload,) = of_kind(overlay, "StatefulSet")
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container, {e["name"]: e.get("value", "") for e in container["env"]}


def quantity(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", value).groups()  # type: ignore[union-attr]
    return int(number) * UNITS.get(unit or "", 1)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_the_whole_server(overlay):
    """Each overlay should render the StatefulSet, its Service and headless Service, NetworkPolicy and
    PodDisruptionBudget, plus its Route or Ingress."""
    kinds = sorted(d["kind"] for d in render(overlay))
    way_in = "Ingress" if overlay.startswith("kubernetes/") else "Route"
    assert kinds == sorted(["StatefulSet", "Service", "Service", "NetworkPolicy", "PodDisruptionBudget", way_in])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", ALL)
def test_kubernetes_schemas(overlay, version):
    """Every Kubernetes object should validate strictly (unknown fields are errors) against the schemas."""
    for doc in render(overlay):
        if doc["kind"] != "Route":
            kubernetes_validate.validate(doc, version, strict=True)


def api_service(overlay: str) -> dict[str, Any]:
    (service,) = [s for s in of_kind(overlay, "Service") if s["spec"].get("clusterIP") != "None"]
    return service


def peers_service(overlay: str) -> dict[str, Any]:
    (service,) = [s for s in of_kind(overlay, "Service") if s["spec"].get("clusterIP") == "None"]
    return service


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if not o.startswith("kubernetes/")])
def test_route(overlay):
    """The Route should match OpenShift's Route API, point at the Service's port, and allow a long job."""
    (route,) = of_kind(overlay, "Route")
    jsonschema.validate(route, ROUTE_SCHEMA)
    service = api_service(overlay)
    assert route["spec"]["to"]["name"] == service["metadata"]["name"]
    assert route["spec"]["port"]["targetPort"] in [p["name"] for p in service["spec"]["ports"]]
    timeout = route["metadata"]["annotations"]["haproxy.router.openshift.io/timeout"]
    assert re.fullmatch(r"\d+m", timeout) and int(timeout[:-1]) >= 30


def test_route_schema_rejects_a_typo():
    """The Route schema should catch a misspelt field (so the test above can fail)."""
    route = json.loads(json.dumps(of_kind("openshift/glm-image", "Route")[0]))
    route["spec"]["tls"]["insecureEdgeTermination"] = route["spec"]["tls"].pop("insecureEdgeTerminationPolicy")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(route, ROUTE_SCHEMA)


def test_policy_linter(tmp_path):
    """checkov should pass every overlay (the checks skipped on purpose are listed with reasons in
    tests/deploy/checkov.yaml)."""
    files = []
    for overlay in ALL:
        path = tmp_path / (overlay.replace("/", "_") + ".yaml")
        path.write_text(yaml.safe_dump_all(render(overlay)))
        files += ["-f", str(path)]
    proc = subprocess.run(
        [str(BIN / "checkov"), *files, "--framework", "kubernetes", "--compact", "--quiet", "--skip-download",
         "--config-file", str(Path(__file__).parent / "checkov.yaml")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Passed checks:" in proc.stdout and "Failed checks: 0" in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize("overlay", ALL)
def test_restricted_pod_security(overlay):
    """Pods should meet Kubernetes' "restricted" profile and OpenShift's restricted-v2 SCC as written:
    non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp, read-only root, no
    fixed UID/GID (OpenShift assigns them), no host namespaces or host paths."""
    allowed_volumes = {"configMap", "emptyDir", "persistentVolumeClaim", "secret", "projected", "downwardAPI"}
    for pod in pod_specs(overlay):
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(sc)
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
        assert pod["automountServiceAccountToken"] is False
        for volume in pod["volumes"]:
            assert set(volume) - {"name"} <= allowed_volumes, volume
        for container in pod["containers"]:
            csc = container["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False and csc["readOnlyRootFilesystem"] is True
            assert csc["capabilities"] == {"drop": ["ALL"]} and not csc.get("privileged")
            assert "runAsUser" not in csc


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_port(overlay):
    """startup and readiness on /health (200 only after a real generation), liveness on /live."""
    _, container, _ = server(overlay)
    assert container["ports"] == [{"name": "http", "containerPort": 30000, "protocol": "TCP"}]
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http"}
    startup = container["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 300  # the field saw ~2 min; measured up to 247 s


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_the_api_port(overlay):
    """Ingress only on 30000/TCP to the server pods; egress only to the other replicas' 30000/TCP and
    to DNS (the server never calls out otherwise)."""
    (policy,) = of_kind(overlay, "NetworkPolicy")
    (workload,) = of_kind(overlay, "StatefulSet")
    selector = workload["spec"]["selector"]["matchLabels"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == selector
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"ports": [{"port": 30000, "protocol": "TCP"}]}]
    peers, dns = spec["egress"]
    assert peers == {"to": [{"podSelector": {"matchLabels": selector}}], "ports": [{"port": 30000, "protocol": "TCP"}]}
    assert "to" not in dns and {p["port"] for p in dns["ports"]} == {53, 5353}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_find_each_other(overlay):
    """Each pod should name its replica after itself and reach the others through the headless Service
    (also while not ready), with settings the gateway accepts; disruptions take one replica at a time."""
    (workload,) = of_kind(overlay, "StatefulSet")
    _, container, env = server(overlay)
    peers = peers_service(overlay)
    assert workload["spec"]["serviceName"] == peers["metadata"]["name"]
    assert peers["spec"]["publishNotReadyAddresses"] is True
    assert peers["spec"]["selector"] == workload["spec"]["selector"]["matchLabels"]
    replica_id = next(e for e in container["env"] if e["name"] == "REPLICA_ID")
    assert replica_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["PEER_URL"] == f"http://{{replica}}.{peers['metadata']['name']}:30000"
    pod_name = f"{workload['metadata']['name']}-0"
    GatewaySettings.from_env({"REPLICA_ID": pod_name, "PEER_URL": env["PEER_URL"]})
    (budget,) = of_kind(overlay, "PodDisruptionBudget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": workload["spec"]["selector"]}
    expected = 2 if overlay.startswith("scale-out/") else 1
    assert workload["spec"]["replicas"] == expected


@pytest.mark.parametrize("key", sorted(models.VARIANTS))
def test_model_overlay_matches_the_launcher(key, tmp_path):
    """Each model's overlay should name its folder, give the shutdown drain its grace period, let the
    launcher time out before the startupProbe, and have a memory limit the pre-flight accepts on one
    80 GB GPU (the plan's host estimate for the full-size model, with the plugin the image's SGLang loads)."""
    pod, container, env = server(f"openshift/{key}")
    assert env["MODEL_PATH"] == f"/app/models/{models.VARIANTS[key].name}"
    assert pod["terminationGracePeriodSeconds"] == int(env["GRACEFUL_SHUTDOWN_TIMEOUT"]) + 15
    startup = container["startupProbe"]
    assert int(env["STARTUP_TIMEOUT"]) == startup["failureThreshold"] * startup["periodSeconds"] - 30
    settings = Settings.from_env({k: v for k, v in env.items() if k != "API_KEY_FILE"})
    h100 = Machine((Gpu(0, "H100", H100),), "test", None)
    plan = make_plan(settings, models.inspect(make(tmp_path / key, key)), h100, plugin=True)  # the image's SGLang
    limit = quantity(container["resources"]["limits"]["memory"])
    assert limit >= plan.host_need_bytes, f"{limit / 2**30:.0f} GiB < the plan's {plan.host_need_bytes / 2**30:.0f} GiB"
    assert quantity(container["resources"]["requests"]["memory"]) <= limit


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_writable_paths_are_volumes(overlay):
    """With a read-only root, DATA_DIR, /tmp and /dev/shm should be volumes; the models read-only."""
    pod, container, _ = server(overlay)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/app/data", "/tmp", "/dev/shm"):
        assert "emptyDir" in volumes[mounts[path]["name"]] and not mounts[path].get("readOnly")
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    assert mounts["/app/models"]["readOnly"] is True
    assert volumes[mounts["/app/models"]["name"]]["persistentVolumeClaim"]["claimName"] == "glm-image-sglang-models"


def test_storage_claim_is_what_the_servers_mount():
    """deploy/storage should create the claim the servers mount, and a loader that mounts it writable."""
    (claim,) = of_kind("storage", "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "glm-image-sglang-models"
    (loader,) = of_kind("storage", "Pod")
    (mount,) = [m for m in loader["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == "/app/models"]
    assert not mount.get("readOnly")


def test_every_model_has_its_overlays():
    """Each supported model should have an OpenShift, a Kubernetes and a scale-out overlay."""
    for flavour in ("openshift", "kubernetes", "scale-out"):
        assert sorted(p.name for p in (DEPLOY / flavour).iterdir()) == sorted(models.VARIANTS)


def test_container_tests_run_the_declared_pod(tmp_path):
    """The container tests should take their `docker run` flags from the manifest's securityContext and
    volumes, and refuse a field they cannot reproduce (so tests and manifests cannot drift apart)."""
    from imagebuild import OPENSHIFT, manifest_run_flags

    assert {"--read-only", "no-new-privileges", "ALL", "/tmp:rw,exec,mode=1777"} <= set(OPENSHIFT)
    assert OPENSHIFT[OPENSHIFT.index("--shm-size") + 1] == "16g"
    changed = tmp_path / "statefulset.yaml"
    changed.write_text(
        (DEPLOY / "base/statefulset.yaml").read_text().replace("            runAsNonRoot: true\n",
                                                              "            runAsNonRoot: true\n            runAsUser: 0\n")
    )  # fmt: skip
    with pytest.raises(AssertionError, match="runAsUser"):
        manifest_run_flags(changed)


DOCS = ROOT / "docs" / "openshift.md"


def test_documented_kubernetes_overlay_works(tmp_path):
    """The overlay docs/openshift.md tells Kubernetes users to write should build and set their image
    and Ingress host."""
    text = DOCS.read_text()
    block = re.search(r"```yaml\n(# my-glm-image/kustomization.yaml\n.*?)```", text, re.S)
    assert block, "docs/openshift.md lost its overlay example"
    shutil.copytree(DEPLOY, tmp_path / "deploy")  # "next to this repository": the paths as documented
    overlay = tmp_path / "my-glm-image"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(block.group(1))
    proc = subprocess.run([str(BIN / "kubectl"), "kustomize", str(overlay)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(proc.stdout) if d}
    image = docs["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.internal.example/ai/glm-image-sglang:<tag>"
    assert docs["Ingress"]["spec"]["rules"][0]["host"] == "glm-image.apps.internal.example"


def test_documented_kernel_cache_overlay_keeps_cache_dir_on_a_claim(tmp_path):
    """The kernel-cache overlay docs/openshift.md shows should build, give each replica a claim of its own
    mounted where the launcher keeps its kernel caches (CACHE_DIR's default), validate against the
    Kubernetes schemas, and leave the pod as restricted as before (no fsGroup, no new pod volume)."""
    block = re.search(r"```yaml\n(# my-glm-image-cached/kustomization.yaml\n.*?)```", DOCS.read_text(), re.S)
    assert block, "docs/openshift.md lost its kernel-cache overlay example"
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    overlay = tmp_path / "my-glm-image-cached"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(block.group(1))
    proc = subprocess.run([str(BIN / "kubectl"), "kustomize", str(overlay)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (workload,) = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "StatefulSet"]
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert mount["mountPath"] == str(Settings.from_env({"MODEL_PATH": "/m"}).caches)
    assert pod["volumes"] == server("openshift/glm-image")[0]["volumes"] and "fsGroup" not in pod["securityContext"]
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(workload, version, strict=True)


@pytest.mark.parametrize("key", sorted(models.VARIANTS))
def test_documented_sizes_match_the_overlays(key):
    """docs/openshift.md's table should give each model's names, folder, memory and times as deployed."""
    _, container, env = server(f"openshift/{key}")
    (workload,) = of_kind(f"openshift/{key}", "StatefulSet")
    name = workload["metadata"]["name"]
    row = next(line for line in DOCS.read_text().splitlines() if line.startswith("| ") and f"`{name}`" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    resources = container["resources"]
    startup = container["startupProbe"]
    assert cells[1:] == [
        f"`{name}`",
        f"`{env['MODEL_PATH']}`",
        f"{resources['requests']['memory']} / {resources['limits']['memory']}",
        f"{startup['failureThreshold'] * startup['periodSeconds']} s",
        f"{env['GRACEFUL_SHUTDOWN_TIMEOUT']} s",
    ]
