"""An Inspect task on a local JSONL file (offline), for Inspect's OpenAI-compatible provider against
`lmtune serve` (docs/harnesses.md). From the repository root:

    LMTUNE_BASE_URL=http://127.0.0.1:8000/v1 LMTUNE_API_KEY=unused \\
      inspect eval configs/harness/inspect_task.py@lmtune_qa --model openai-api/lmtune/merged \\
      --max-tokens 32 --temperature 0 --max-connections 4 --log-dir runs/harness/inspect --log-format json
"""

from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import FieldSpec, json_dataset
from inspect_ai.scorer import match
from inspect_ai.solver import generate

QA = Path(__file__).parent / "qa.jsonl"


@task
def lmtune_qa(data: str = str(QA)) -> Task:
    """The questions of `data` (id, question, answer), each answered once, scored by exact match."""
    return Task(
        dataset=json_dataset(data, FieldSpec(input="question", target="answer", id="id")),
        solver=generate(),
        scorer=match(location="exact", ignore_case=True),
    )
