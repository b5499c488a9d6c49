"""The LiteLLM proxy, pinned, as the comparison target of `bench.compare`.

It runs from a virtualenv of its own (`bench/.venv-litellm`, made by `ensure_venv`
with pip on first use) so that litellm's proxy dependencies never meet the
gateway's, and no gateway process ever imports it. One worker, no database, a
master key (it refuses to start without one; the gateway runs with keys too), the
same fake upstream as the gateway, so both proxy the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import procs

VERSION = "1.106.2"
VENV = Path(__file__).resolve().parent / ".venv-litellm"
MASTER_KEY = "sk-bench-" + os.urandom(16).hex()
START_TIMEOUT_S = 120.0  # its import alone takes several seconds on this class of machine


def ensure_venv(venv: Path = VENV) -> Path:
    """The `litellm` command of a venv holding `litellm[proxy]==VERSION`, created when missing."""
    command = venv / "bin" / "litellm"
    stamp = venv / f".installed-{VERSION}"
    if not stamp.exists():
        print(f"creating {venv} with litellm[proxy]=={VERSION} (once)", file=sys.stderr, flush=True)
        # Without our PYTHONPATH: pip would see the gateway's checkout as installed in the new venv.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, f"litellm[proxy]=={VERSION}"], check=True, env=env, cwd=venv)
        stamp.touch()
    return command


def config(upstream_base_url: str, upstream_model: str, model: str) -> str:
    return (
        "model_list:\n"
        f"  - model_name: {model}\n"
        "    litellm_params:\n"
        f"      model: openai/{upstream_model}\n"
        f"      api_base: {upstream_base_url}\n"
        "      api_key: unused\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )


def start(workdir: Path, upstream_base_url: str, upstream_model: str, model: str) -> tuple[procs.Proc, str]:
    """Start the proxy on a free loopback port; return it and its root URL once it is live."""
    command_path = ensure_venv()
    config_path = workdir / "litellm.yaml"
    config_path.write_text(config(upstream_base_url, upstream_model, model), encoding="utf-8")
    env = procs.python_env()
    env.pop("PYTHONPATH", None)  # its own venv only
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    env["LITELLM_MASTER_KEY"] = MASTER_KEY
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", DISABLE_SCHEMA_UPDATE="true")
    command = [str(command_path), "--config", str(config_path), "--host", "127.0.0.1", "--num_workers", "1"]
    return procs.start_server(
        workdir,
        "litellm",
        [*command, "--port"],
        env,
        timeout_s=START_TIMEOUT_S,
        health_path="/health/liveliness",
    )
