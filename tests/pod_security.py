"""The pods an Argo WorkflowTemplate creates, and the Pod Security Standards "restricted" rules.

`argo_pods` builds, for each container template, the pod Argo's controller (v3.4 and later,
emissary executor) creates for it: the `init` and `wait` executor containers with the
controller's default executor settings (no securityContext), the `main` container, sidecars,
the executor's emptyDir volumes plus the template's and workflow's volumes, the pod
securityContext, and last the workflow's and template's `podSpecPatch` (strategic merge:
containers by name), as workflow/controller/workflowpod.go does.

`restricted_violations` checks a pod spec field by field against every control of the
baseline and restricted profiles (https://kubernetes.io/docs/concepts/security/pod-security-standards/).
"""

from __future__ import annotations

import copy
import json

import yaml

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
EXECUTOR = "quay.io/argoproj/argoexec"


def _merge(base, patch):
    """Strategic merge as Kubernetes does it for a PodSpec: lists of containers merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(
            isinstance(x, dict) and "name" in x for x in base + patch):
        out = [dict(x) for x in base]
        for item in patch:
            for i, existing in enumerate(out):
                if existing["name"] == item["name"]:
                    out[i] = _merge(existing, item)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _patch(text: str | None) -> dict:
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return yaml.safe_load(text)


def argo_pods(workflow_template: dict) -> dict[str, dict]:
    """Template name -> the pod spec Argo creates for it (container templates only)."""
    spec = workflow_template["spec"]
    pods = {}
    for template in spec["templates"]:
        if "container" not in template:
            continue
        main = {**template["container"], "name": "main"}
        executor = {"name": "init", "image": EXECUTOR}            # controller default: no securityContext
        pod = {
            "restartPolicy": "Never",
            "serviceAccountName": template.get("serviceAccountName", spec.get("serviceAccountName")),
            "securityContext": template.get("securityContext", spec.get("securityContext", {})),
            "volumes": [{"name": "var-run-argo", "emptyDir": {}}, {"name": "tmp-dir-argo", "emptyDir": {}},
                        *spec.get("volumes", []), *template.get("volumes", [])],
            "initContainers": [executor, *template.get("initContainers", [])],
            "containers": [{**executor, "name": "wait"}, main, *template.get("sidecars", [])],
        }
        for key in ("hostNetwork", "dnsPolicy", "automountServiceAccountToken"):
            if key in spec:
                pod[key] = spec[key]
        for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
            if key in template:
                pod[key] = template[key]
        for source in (spec.get("podSpecPatch"), template.get("podSpecPatch")):
            pod = _merge(pod, _patch(source))
        pod["_annotations"] = {**spec.get("podMetadata", {}).get("annotations", {}),
                               **template.get("metadata", {}).get("annotations", {})}
        pods[template["name"]] = pod
    return pods


def restricted_violations(pod: dict) -> list[str]:
    """Every way ``pod`` (a PodSpec) breaks the baseline or restricted profile."""
    bad: list[str] = []
    psc = pod.get("securityContext") or {}
    # --- baseline ---
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            bad.append(f"host namespaces: {key}")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        bad.append("HostProcess: pod")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if "hostPath" in kinds:
            bad.append(f"HostPath volume {volume['name']}")
        if not kinds <= RESTRICTED_VOLUMES or len(kinds) != 1:       # restricted: volume types
            bad.append(f"volume type of {volume['name']}: {sorted(kinds)}")
    for sysctl in psc.get("sysctls", []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            bad.append(f"sysctl {sysctl.get('name')}")
    _selinux(psc, "pod", bad)
    if (psc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        bad.append("AppArmor: pod")
    for key, value in pod.get("_annotations", {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and \
                value not in ("runtime/default",) and not value.startswith("localhost/"):
            bad.append(f"AppArmor annotation {key}")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        bad.append("seccomp: pod Unconfined")
    # --- restricted, pod level ---
    if psc.get("runAsUser") == 0:
        bad.append("runAsUser 0: pod")
    containers = [*pod.get("initContainers", []), *pod.get("containers", []),
                  *pod.get("ephemeralContainers", [])]
    for c in containers:
        name, sc = c["name"], c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(f"privileged: {name}")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"HostProcess: {name}")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                bad.append(f"hostPort: {name}")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"procMount: {name}")
        _selinux(sc, name, bad)
        if (sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            bad.append(f"AppArmor: {name}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"capabilities: {name} does not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"capabilities: {name} adds {caps['add']}")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"allowPrivilegeEscalation: {name} not false")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            bad.append(f"runAsNonRoot: {name} not true")
        if sc.get("runAsUser") == 0:
            bad.append(f"runAsUser 0: {name}")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"seccomp: {name} is {seccomp}")
    return bad


def _selinux(sc: dict, where: str, bad: list[str]) -> None:
    options = sc.get("seLinuxOptions") or {}
    if options.get("type", "") not in SELINUX_TYPES or options.get("user") or options.get("role"):
        bad.append(f"SELinux: {where}")
