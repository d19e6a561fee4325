"""The code suite on a model: `samples_per_task` answers to each problem through the generation engine,
each run against the problem's tests in the sandbox, pass@k per task and over the tasks."""

from __future__ import annotations

from lmtune.config.suites import CodeSuite
from lmtune.evaluate.answers import Answers, SuiteResult
from lmtune.evaluate.code import completion_from_reply, pass_at, read_problems, run_samples
from lmtune.evaluate.sandbox import Limits
from lmtune.evaluate.stats import ItemScores
from lmtune.runtime.generation import Generator, SamplingParams

INSTRUCTION = (
    "Complete this Python function. Answer with the whole function in one ```python code block.\n\n"
    "```python\n{prompt}```"
)


def code_suite(suite: CodeSuite, answers: Answers) -> SuiteResult:
    """pass@k of the model's answers to the suite's problems (see `lmtune.evaluate.code`)."""
    problems = read_problems(suite.problems)
    chosen = list(problems.values())[: suite.max_samples]
    generator = Generator(answers.model, answers.tokenizer, answers.stops)
    prompts = [
        generator.encode(
            answers.with_system([{"role": "user", "content": INSTRUCTION.format(prompt=p.prompt)}])
        )
        for p in chosen
        for _ in range(suite.samples_per_task)
    ]
    params = SamplingParams(
        max_new_tokens=answers.cfg.max_new_tokens, temperature=suite.temperature, top_p=1.0, top_k=0, seed=0
    )
    replies = generator.generate(
        prompts, params, batch_size=answers.cfg.batch_size, desc=f"{suite.name} ({answers.label})"
    )
    samples = [
        (problem.task_id, completion_from_reply(problem, reply.text))
        for problem, reply in zip(
            [p for p in chosen for _ in range(suite.samples_per_task)], replies, strict=True
        )
    ]
    limits = Limits(
        cpu_seconds=max(1, int(suite.timeout_s)), wall_seconds=suite.timeout_s, memory_mb=suite.memory_mb
    )
    results = run_samples(problems, samples, limits)
    mean, per_task = pass_at(results, suite.ks)
    items = {f"{suite.name}/pass@{k}": ItemScores([per_task[p.task_id][k] for p in chosen]) for k in suite.ks}
    rows = [
        {
            "task_id": r.task_id,
            "reply": reply.text,
            "completion": r.completion,
            "passed": r.passed,
            "result": r.result,
        }
        for r, reply in zip(results, replies, strict=True)
    ]
    settings = {
        "problems": suite.problems,
        "tasks": len(chosen),
        "samples_per_task": suite.samples_per_task,
        "temperature": suite.temperature,
        "limits": {"wall_s": suite.timeout_s, "cpu_s": limits.cpu_seconds, "memory_mb": suite.memory_mb},
    }
    return SuiteResult({f"{suite.name}/pass@{k}": v for k, v in mean.items()}, items, rows, settings)
