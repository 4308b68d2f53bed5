"""Golden templates, in the manner of Hera's example tests: a few cluster variants of the
``book-job`` template, each compiled to a committed YAML file under ``tests/golden/``.

A change to the compiler or the spec shows up as a diff of these files in review. CI never
regenerates them: a test fails on drift. To accept a change, regenerate on purpose:

    BOOKJOB_REGENERATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pipeline.argo import CLUSTER_DEFAULTS, ArgoSettings, to_yaml
from tests.argo_api import errors, schema_validator

GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("BOOKJOB_REGENERATE_GOLDEN") == "1"

VARIANTS: dict[str, ArgoSettings] = {
    # the default: ComfyUI beside each `faces` pod, holding its GPU
    "comfyui-sidecar": ArgoSettings(),
    # ComfyUI as an in-cluster service reached by URL: no page goes to a GPU
    "comfyui-url": ArgoSettings(comfyui_sidecar_image="", parameter_defaults={
        **CLUSTER_DEFAULTS, "comfyui_url": "http://comfyui.ml.svc:8188"}),
    # a cluster without GPUs: CPU backends, no GPU request, selector, toleration or semaphore
    "cpu-only": ArgoSettings(gpus=False, comfyui_sidecar_image="", parameter_defaults={
        **CLUSTER_DEFAULTS, "analyzer": "heuristic", "analyzer_model": "",
        "face_backend": "classic", "comfyui_url": ""}),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_golden_template(name):
    path = GOLDEN / f"{name}.yaml"
    text = to_yaml(VARIANTS[name])
    if REGENERATE:
        path.write_text(text)
    assert path.is_file(), f"{path} is missing: run BOOKJOB_REGENERATE_GOLDEN=1 pytest {__file__}"
    assert path.read_text() == text, (
        f"{path.name} drifted from the compiler: review the change, then regenerate with "
        "BOOKJOB_REGENERATE_GOLDEN=1")
    assert errors(schema_validator(), yaml.safe_load(text)) == []


def test_goldens_differ_where_the_variants_do():
    """The variants are not the same file three times: GPU placement exists only where a GPU does."""
    docs = {n: yaml.safe_load((GOLDEN / f"{n}.yaml").read_text()) for n in VARIANTS}

    def gpu_templates(doc):
        return sorted(t["name"] for t in doc["spec"]["templates"] if "synchronization" in t)
    assert gpu_templates(docs["comfyui-sidecar"]) == ["analyze", "faces"]
    assert gpu_templates(docs["comfyui-url"]) == ["analyze"]
    assert gpu_templates(docs["cpu-only"]) == []


def test_default_golden_is_the_committed_template():
    assert (GOLDEN / "comfyui-sidecar.yaml").read_text() == \
        (GOLDEN.parents[1] / "argo-templates" / "book-job.yaml").read_text()
