"""`gateway rag ingest|list|stats|delete` as a user runs them: a subprocess on a local store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai

from tests.harness import config_for


def _rag(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QDRANT_PATH": str(store), "HF_HUB_OFFLINE": "1"}
    env.pop("QDRANT_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "rag", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_ingest_list_stats_delete_and_serve_with_no_config_change(fake, gateway, tmp_path):
    store, docs = tmp_path / "qdrant", tmp_path / "docs"
    docs.mkdir()
    (docs / "bees.md").write_text("# Bees\n\nVisit the hive every seven days from May to July.\n")
    (docs / "tool.py").write_text(
        "def sharpen(blade):\n    '''Hone the chisel at 25 degrees.'''\n    return blade\n"
    )
    (docs / "photo.txt").write_bytes(b"\x00\x01\x02binary")

    first = _rag("ingest", str(docs), "--collection", "notes", "--author", "mara", "--json", store=store)
    assert first.returncode == 1, first.stderr  # one file failed; the others went in
    report = json.loads(first.stdout)
    assert (report["added"], report["failed"]) == (2, 1)
    assert "photo.txt" in first.stderr and "binary" in first.stderr
    (docs / "photo.txt").unlink()
    again = _rag("ingest", str(docs), "--collection", "notes", "--author", "mara", store=store)
    assert again.returncode == 0 and "0 added, 0 updated, 2 unchanged" in again.stdout

    listed = _rag("list", "--json", store=store)
    assert json.loads(listed.stdout)[0]["name"] == "notes"
    stats = json.loads(_rag("stats", "notes", store=store).stdout)
    assert stats["documents"] == 2 and stats["embedder"] == "local:all-MiniLM-L6-v2-int8"

    up = fake(name="up")
    gw = gateway(config_for({"up": up.url}), qdrant_path=store)
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    api.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "At what angle do I hone a chisel?"}],
        extra_body={"rag": {"collection": "notes", "top_k": 1}},
    )
    assert "25 degrees" in up.sim.requests[-1].body["messages"][0]["content"]
    gw.stop()  # local mode: one process per store

    assert _rag("delete", "notes", store=store).returncode == 0
    assert _rag("stats", "notes", store=store).returncode == 1
