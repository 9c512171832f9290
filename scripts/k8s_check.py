"""Validates one rendered kustomize build (a multi-document YAML file).

Called by scripts/k8s-validate for each overlay. Checks:
- built-in kinds against Kubernetes' schemas (kubernetes-validate, strict:
  unknown fields are errors), for the Kubernetes version K8S_VERSION;
- custom resources against the schemas vendored in k8s/schemas
  (<group>/<kind>_<version>.json, see k8s/schemas/README.md); a kind with
  neither is an error;
- every namespaced object names its namespace;
- references inside the build: Secrets and ConfigMaps (and their keys)
  that containers read, the pods each Service, NetworkPolicy, PDB and
  autoscaler selects (a selector matching no pod is a typo, except the
  pods operators make and the simulator, which only dev runs);
- every metric named by a PrometheusRule, a Grafana dashboard or an
  autoscaler is one the code exports (or a rule records), and every
  BOXOFFICE_* variable the manifests set is one the code reads.
Prints one line per object and a closing count; exits 1 on any error.
"""

import json
import os
import pathlib
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "k8s" / "schemas"
K8S_VERSION = os.environ.get("K8S_VERSION", "1.32")
METRIC = re.compile(r"\b(boxoffice_[a-z0-9_]+)")
RECORDED = re.compile(r"\b(boxoffice:[a-z0-9_:]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Kinds that have no namespace; everything else the overlays render must
# name one.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass", "StorageClass"}


def rust_sources():
    text = []
    for path in (ROOT / "crates").rglob("*.rs"):
        text.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(text)


def exported(sources, name):
    """Whether `name` appears as a whole metric name in the sources."""
    return re.search(rf"(?<![a-z0-9_]){re.escape(name)}(?![a-z0-9_])", sources) is not None


def name_of(doc):
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


def validate_custom(doc):
    group, _, version = doc["apiVersion"].rpartition("/")
    path = SCHEMAS / group / f"{doc['kind'].lower()}_{version}.json"
    if not path.is_file():
        return [f"no schema for {doc['apiVersion']} {doc['kind']} (expected {path.relative_to(ROOT)})"]
    schema = json.loads(path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


def validate_builtin(doc):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        return []
    except kubernetes_validate.utils.SchemaNotFoundError:
        return None
    except kubernetes_validate.utils.ValidationError as error:
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        return [f"{path}: {error.message}"]


def metric_names(docs):
    """(where, name) of every metric the rendered objects query."""
    found = []
    for doc in docs:
        kind = doc.get("kind")
        if kind == "PrometheusRule":
            for group in doc["spec"].get("groups", []):
                for rule in group.get("rules", []):
                    for name in METRIC.findall(str(rule.get("expr", ""))) + RECORDED.findall(str(rule.get("expr", ""))):
                        found.append((name_of(doc), name))
        elif kind == "ConfigMap" and (doc.get("metadata", {}).get("labels") or {}).get("grafana_dashboard"):
            for text in (doc.get("data") or {}).values():
                for name in METRIC.findall(text) + RECORDED.findall(text):
                    found.append((name_of(doc), name))
        elif kind == "HorizontalPodAutoscaler":
            for metric in doc["spec"].get("metrics", []):
                source = metric.get("pods") or metric.get("external") or metric.get("object") or {}
                name = (source.get("metric") or {}).get("name")
                if name:
                    found.append((name_of(doc), name))
    return found


def recorded_names(docs):
    names = set()
    for doc in docs:
        if doc.get("kind") == "PrometheusRule":
            for group in doc["spec"].get("groups", []):
                for rule in group.get("rules", []):
                    if "record" in rule:
                        names.add(rule["record"])
    return names


def env_names(docs):
    """(where, name) of every BOXOFFICE_* variable set on a container or in a ConfigMap."""
    found = []
    for doc in docs:
        spec = doc.get("spec") or {}
        template = (spec.get("jobTemplate") or {}).get("spec", spec).get("template") or {}
        for container in (template.get("spec") or {}).get("containers", []):
            for env in container.get("env", []):
                if env["name"].startswith("BOXOFFICE_"):
                    found.append((name_of(doc), env["name"]))
        if doc.get("kind") in ("ConfigMap", "Secret"):
            for key in list((doc.get("data") or {})) + list((doc.get("stringData") or {})):
                if key.startswith("BOXOFFICE_"):
                    found.append((name_of(doc), key))
    return found


# Made out of band (README, "Deploying on Kubernetes") or by CloudNativePG.
EXTERNAL_SECRETS = {"boxoffice-db-app", "boxoffice-secrets", "boxoffice-payments",
                    "boxoffice-meilisearch", "boxoffice-backup-s3"}
# Pods no template here makes: CloudNativePG's, and the simulator (dev only).
def made_elsewhere(labels):
    return any(key.startswith("cnpg.io/") for key in labels) or labels.get("app.kubernetes.io/name") == "paysim"


def pod_templates(docs):
    """(owner, labels, pod spec) of every pod template."""
    for doc in docs:
        spec = doc.get("spec") or {}
        template = spec.get("template")
        if doc.get("kind") in ("Deployment", "StatefulSet", "Job", "DaemonSet") and template:
            yield name_of(doc), (template.get("metadata") or {}).get("labels") or {}, template.get("spec") or {}


def selects(selector, labels):
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present = expression["key"] in labels
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression.get("values", []):
            return False
        if operator == "NotIn" and value in expression.get("values", []):
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def reference_problems(docs):
    problems = []
    keys = {}
    for doc in docs:
        if doc.get("kind") in ("ConfigMap", "Secret"):
            data = list((doc.get("data") or {})) + list((doc.get("stringData") or {}))
            keys[(doc["kind"], doc["metadata"]["name"])] = set(data)
    def check(where, kind, name, key=None):
        if (kind, name) in keys:
            if key is not None and key not in keys[(kind, name)]:
                problems.append(f"{where}: {kind} {name} has no key {key}")
        elif not (kind == "Secret" and name in EXTERNAL_SECRETS):
            problems.append(f"{where}: no {kind} {name} in the build")
    templates = list(pod_templates(docs))
    for owner, _, spec in templates:
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    check(owner, "ConfigMap", source["configMapRef"]["name"])
                if "secretRef" in source:
                    check(owner, "Secret", source["secretRef"]["name"])
            for env in container.get("env", []):
                ref = env.get("valueFrom") or {}
                if "configMapKeyRef" in ref:
                    check(owner, "ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"])
                if "secretKeyRef" in ref:
                    check(owner, "Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                check(owner, "ConfigMap", volume["configMap"]["name"])
    def must_select(where, selector):
        labels = dict(selector.get("matchLabels") or {})
        if made_elsewhere(labels):
            return
        if not any(selects(selector, pod_labels) for _, pod_labels, _ in templates):
            problems.append(f"{where}: selector {selector} matches no pod")
    names = {name_of(doc) for doc in docs}
    for doc in docs:
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        where = name_of(doc)
        if kind == "Service" and spec.get("selector"):
            must_select(where, {"matchLabels": spec["selector"]})
        elif kind == "PodDisruptionBudget":
            must_select(where, spec["selector"])
        elif kind == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            if f"{target['kind']}/{target['name']}" not in names:
                problems.append(f"{where}: scales {target['kind']}/{target['name']}, which is not in the build")
        elif kind == "NetworkPolicy":
            if spec["podSelector"]:
                must_select(where, spec["podSelector"])
            for rule in spec.get("ingress", []) + spec.get("egress", []):
                for peer in rule.get("from", []) + rule.get("to", []):
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        must_select(where, peer["podSelector"])
    return problems


def main():
    path = pathlib.Path(sys.argv[1])
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    sources = rust_sources()
    errors = 0
    builtin = custom = 0
    for doc in docs:
        if doc.get("kind") not in CLUSTER_SCOPED and not (doc.get("metadata") or {}).get("namespace"):
            print(f"  {name_of(doc)}: no namespace (kubectl would put it in the context's)")
            errors += 1
        problems = validate_builtin(doc)
        if problems is None:
            problems = validate_custom(doc)
            custom += 1
        else:
            builtin += 1
        for problem in problems:
            print(f"  {name_of(doc)}: {problem}")
            errors += 1

    for problem in reference_problems(docs):
        print(f"  {problem}")
        errors += 1

    recorded = recorded_names(docs)
    for where, name in metric_names(docs):
        if name in recorded:
            continue
        base = name
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix):
                base = name[: -len(suffix)]
        if not any(exported(sources, n) for n in (name, base)):
            print(f"  {where}: metric {name} is not exported by the code under crates/")
            errors += 1

    prefixes = set(re.findall(r'"(BOXOFFICE_[A-Z0-9_]*_)"', sources))
    for where, name in env_names(docs):
        if f'"{name}"' not in sources and not any(name.startswith(p) for p in prefixes):
            print(f"  {where}: {name} is read nowhere under crates/")
            errors += 1

    print(
        f"{path.stem}: {len(docs)} objects, {builtin} built-in (Kubernetes {K8S_VERSION}, strict), "
        f"{custom} custom resources (vendored CRD schemas), {len(metric_names(docs))} metric references"
    )
    print(f"{path.stem}: {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
