"""The exported folder loads and chats in a fresh interpreter with only torch + transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from tuned_run import GSM8K_STYLE, make_run

from lmtune.export.run import ExportResult, run
from lmtune.runtime.rundir import RunDir

# Runs in a subprocess: load the folder, apply its chat template, generate with its generation config.
STANDALONE = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

path, messages, budget = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path).eval()
enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
with torch.no_grad():
    out = model.generate(**enc, max_new_tokens=budget)
new = out[0, enc["input_ids"].shape[1]:].tolist()
assert "lmtune" not in sys.modules, "the exported folder must load without lmtune"
print(json.dumps({
    "new": new,
    "text": tok.decode(new, skip_special_tokens=True),
    "eos": model.generation_config.eos_token_id,
    "im_end": tok.convert_tokens_to_ids("<|im_end|>"),
    "lmtune_loaded": "lmtune" in sys.modules,
}))
"""


def _standalone(folder: Path, messages: list[dict[str, str]], budget: int, cwd: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", STANDALONE, str(folder), json.dumps(messages), str(budget)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_merged_lora_export_chats_without_lmtune(
    lora_run: RunDir, exported: ExportResult, tmp_path: Path
) -> None:
    got = _standalone(exported.path, GSM8K_STYLE[0][:-1], 8, tmp_path)
    assert got["lmtune_loaded"] is False
    assert got["eos"] == got["im_end"]
    assert 1 <= len(got["new"]) <= 8
    assert got["im_end"] not in got["new"][:-1]  # nothing after an end of turn
    # the same answer the trained model gave in memory (export check, same prompt and budget)
    check = json.loads((lora_run.export / "export_check.json").read_text())
    assert got["new"] == check["before"][0]["token_ids"]


def test_export_sets_end_of_turn_as_eos_so_replies_stop(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A trained model whose generation config names a document eos (as many base models ship) would run
    past the end of its reply; the export's generation config stops it at <|im_end|>."""
    rundir = make_run(tmp_path, tiny_model_dir, method="full", scale=0.01, export={"check_prompts": 2})
    messages = [{"role": "user", "content": "what is the capital city of france?"}]
    tok = AutoTokenizer.from_pretrained(rundir.model)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    model = AutoModelForCausalLM.from_pretrained(rundir.model).eval()
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():  # make <|im_end|> the clear first choice after this prompt
        h = model.model(input_ids=enc["input_ids"]).last_hidden_state[0, -1]
        model.lm_head.weight[im_end] = h * (50.0 / h.dot(h))
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|endoftext|>")
    model.save_pretrained(rundir.model)
    with torch.no_grad():  # with the trained folder's own generation config it does not stop
        unstopped = model.generate(**enc, max_new_tokens=8)[0, enc["input_ids"].shape[1] :].tolist()
    assert unstopped[0] == im_end and len(unstopped) == 8

    result = run(rundir)
    assert result.check.identical
    got = _standalone(result.path, messages, 8, tmp_path)
    assert got["eos"] == im_end
    assert got["new"] == [im_end] and got["text"] == ""
