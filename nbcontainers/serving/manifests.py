"""Deployment files written next to an exported serving image: compose, Kubernetes, KServe."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GRPC_PORT",
    "PORT",
    "Deployment",
    "all_files",
    "autoscaler",
    "compose",
    "deployment",
    "inference_service",
    "service",
]

PORT = 8080
GRPC_PORT = 8081  # the Open Inference Protocol over gRPC, with --grpc


@dataclass(frozen=True)
class Deployment:
    """What the manifests need to know about one serving image."""

    name: str  # DNS-1123 label: lower case, digits, '-'
    image: str
    gpu: bool
    grpc: bool = False
    memory: str = "2Gi"
    cpu: str = "1"


def _probes(indent: str) -> str:
    return "\n".join(
        f"{indent}{line}"
        for line in (
            "readinessProbe:",
            f"  httpGet: {{path: /v2/health/ready, port: {PORT}}}",
            "  periodSeconds: 5",
            "  failureThreshold: 3",
            "livenessProbe:",
            f"  httpGet: {{path: /v2/health/live, port: {PORT}}}",
            "  periodSeconds: 10",
            "startupProbe:",
            f"  httpGet: {{path: /v2/health/ready, port: {PORT}}}",
            "  periodSeconds: 2",
            "  failureThreshold: 150  # up to 5 minutes to load a large model",
        )
    )


def _resources(d: Deployment, indent: str) -> str:
    limits = [f"memory: {d.memory}"] + (['nvidia.com/gpu: "1"'] if d.gpu else [])
    lines = [
        "resources:",
        "  requests:",
        f'    cpu: "{d.cpu}"',
        f"    memory: {d.memory}",
        "  limits:",
        *(f"    {limit}" for limit in limits),
    ]
    return "\n".join(indent + line for line in lines)


def _workers(indent: str) -> str:
    # One worker per requested CPU (rounded up): without a CPU limit the container sees the
    # whole node, and a worker per node CPU, each with its own model, would not fit the pod.
    lines = [
        "env:",
        "  - name: NBC_WORKERS",
        '    valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: "1"}}',
    ]
    return "\n".join(indent + line for line in lines)


def _security(indent: str) -> str:
    lines = [
        "securityContext:",
        "  runAsNonRoot: true",
        "  runAsUser: 1000",
        "  allowPrivilegeEscalation: false",
        "  readOnlyRootFilesystem: true",
        "  capabilities: {drop: [ALL]}",
    ]
    return "\n".join(indent + line for line in lines)


def compose(d: Deployment) -> str:
    gpu = (
        "    deploy:\n      resources:\n        reservations:\n          devices:\n"
        "            - driver: nvidia\n              count: 1\n              capabilities: [gpu]\n"
        if d.gpu
        else ""
    )
    return (
        f"# docker compose up -d  ->  http://127.0.0.1:{PORT}/v2/models/{d.name}\n"
        "services:\n"
        f"  {d.name}:\n"
        f"    image: {d.image}\n"
        "    ports:\n"
        f'      - "127.0.0.1:{PORT}:{PORT}"\n'
        + (f'      - "127.0.0.1:{GRPC_PORT}:{GRPC_PORT}"\n' if d.grpc else "")
        + "    read_only: true\n"
        "    tmpfs: [/tmp]\n"
        "    cap_drop: [ALL]\n"
        "    security_opt: [no-new-privileges]\n"
        "    restart: unless-stopped\n"
        f"{gpu}"
    )


def deployment(d: Deployment) -> str:
    gpu_note = (
        "      # GPU node pool: the NVIDIA device plugin schedules nvidia.com/gpu\n"
        if d.gpu
        else ""
    )
    return (
        "apiVersion: apps/v1\n"
        "kind: Deployment\n"
        f"metadata:\n  name: {d.name}\n  labels: {{app: {d.name}}}\n"
        "spec:\n"
        "  replicas: 1\n"
        f"  selector:\n    matchLabels: {{app: {d.name}}}\n"
        "  template:\n"
        f"    metadata:\n      labels: {{app: {d.name}}}\n"
        "    spec:\n"
        f"{gpu_note}"
        "      automountServiceAccountToken: false\n"
        "      containers:\n"
        f"        - name: model\n"
        f"          image: {d.image}\n"
        f"          ports: [{{containerPort: {PORT}, name: http}}"
        + (f", {{containerPort: {GRPC_PORT}, name: grpc}}" if d.grpc else "")
        + "]\n"
        f"{_probes('          ')}\n"
        f"{_resources(d, '          ')}\n"
        f"{_workers('          ')}\n"
        f"{_security('          ')}\n"
        "          volumeMounts: [{name: tmp, mountPath: /tmp}]\n"
        "      volumes: [{name: tmp, emptyDir: {}}]\n"
    )


def service(d: Deployment) -> str:
    return (
        "apiVersion: v1\n"
        "kind: Service\n"
        f"metadata:\n  name: {d.name}\n"
        "spec:\n"
        f"  selector: {{app: {d.name}}}\n"
        f"  ports: [{{name: http, port: 80, targetPort: {PORT}}}"
        + (f", {{name: grpc, port: {GRPC_PORT}, targetPort: {GRPC_PORT}}}" if d.grpc else "")
        + "]\n"
    )


def autoscaler(d: Deployment) -> str:
    return (
        "apiVersion: autoscaling/v2\n"
        "kind: HorizontalPodAutoscaler\n"
        f"metadata:\n  name: {d.name}\n"
        "spec:\n"
        f"  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {d.name}}}\n"
        "  minReplicas: 1\n"
        f"  maxReplicas: {2 if d.gpu else 8}\n"
        "  metrics:\n"
        "    - type: Resource\n"
        "      resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}\n"
    )


def inference_service(d: Deployment) -> str:
    return (
        "apiVersion: serving.kserve.io/v1beta1\n"
        "kind: InferenceService\n"
        f"metadata:\n  name: {d.name}\n"
        "spec:\n"
        "  predictor:\n"
        "    containers:\n"
        "      - name: kserve-container\n"
        f"        image: {d.image}\n"
        f"        ports: [{{containerPort: {PORT}, protocol: TCP}}]\n"
        f"{_probes('        ')}\n"
        f"{_resources(d, '        ')}\n"
        f"{_workers('        ')}\n"
    )


def all_files(d: Deployment) -> dict[str, str]:
    """Relative path -> text, for the export folder."""
    return {
        "compose.yaml": compose(d),
        "k8s/deployment.yaml": deployment(d),
        "k8s/service.yaml": service(d),
        "k8s/hpa.yaml": autoscaler(d),
        "kserve.yaml": inference_service(d),
    }
