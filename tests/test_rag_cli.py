"""`gateway rag ingest|list|stats|delete` on a local store: the first run as a user runs it (a
subprocess of the installed entry point: its exit code, stdout and stderr), the rest through the
same `gateway.cli.main` in this process, which spares a start of the interpreter and its imports each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from gateway.cli import main
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


def _rag_here(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`gateway rag …` through the CLI's own entry function; its exit code and stdout."""
    capsys.readouterr()
    code = main(["rag", *args])
    return code, capsys.readouterr().out


def test_ingest_list_stats_delete_and_serve_with_no_config_change(
    fake, gateway, tmp_path, monkeypatch, capsys
):
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
    monkeypatch.setenv("QDRANT_PATH", str(store))
    code, out = _rag_here("ingest", str(docs), "--collection", "notes", "--author", "mara", capsys=capsys)
    assert code == 0 and "0 added, 0 updated, 2 unchanged" in out

    code, out = _rag_here("list", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)[0]["name"] == "notes"
    code, out = _rag_here("stats", "notes", capsys=capsys)
    stats = json.loads(out)
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

    assert _rag_here("delete", "notes", capsys=capsys)[0] == 0
    assert _rag_here("stats", "notes", capsys=capsys)[0] == 1
