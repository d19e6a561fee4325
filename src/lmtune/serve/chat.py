"""An interactive terminal chat with a local model folder (no server involved).

Type a message and press Enter; the reply streams back as it is generated. `/reset` forgets the
conversation (the system prompt stays), `/exit` or end of input (Ctrl-D) quits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from lmtune.config.backends import TransformersBackend
from lmtune.serve.backends import open_engine
from lmtune.serve.engine import Engine, PromptError, SamplingParams

EXIT_COMMAND = "/exit"
RESET_COMMAND = "/reset"
PROMPT = "> "


def chat_loop(
    engine: Engine,
    params: SamplingParams,
    stdin: TextIO,
    stdout: TextIO,
    system: str | None = None,
) -> list[dict[str, str]]:
    """Read user lines from `stdin`, write replies to `stdout`, until `/exit` or end of input.

    Args:
        engine: the loaded model.
        params: sampling settings for every reply.
        stdin: where user lines come from.
        stdout: where prompts and replies go.
        system: optional system message that starts (and survives `/reset` of) the conversation.

    Returns:
        The conversation as it stood when the loop ended (system message included).
    """
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    while True:
        stdout.write(PROMPT)
        stdout.flush()
        line = stdin.readline()
        if not line:  # end of input
            stdout.write("\n")
            break
        text = line.rstrip("\r\n")
        command = text.strip()
        if command == EXIT_COMMAND:
            break
        if command == RESET_COMMAND:
            history = list(start)
            stdout.write("(conversation cleared)\n")
            continue
        if not command:
            continue
        history.append({"role": "user", "content": text})
        try:
            prompt_ids = engine.encode_chat(history)
        except PromptError as exc:
            history.pop()
            stdout.write(f"(cannot send: {exc}; /reset starts over)\n")
            continue

        def show(piece: str) -> None:
            stdout.write(piece)
            stdout.flush()

        done = engine.generate(prompt_ids, params, on_text=show)
        stdout.write("\n" if done.finish_reason == "stop" else " [cut at max_tokens]\n")
        history.append({"role": "assistant", "content": done.text})
    stdout.flush()
    return history


def chat(
    model_dir: str | Path,
    *,
    system: str | None = None,
    max_tokens: int = 512,
    temperature: float = 0.7,
    top_p: float = 1.0,
    seed: int | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> list[dict[str, str]]:
    """Load `model_dir` and chat with it in the terminal (see `chat_loop`; streams default to sys's).

    Args:
        model_dir: standard model folder with a chat template.
        system: optional system message.
        max_tokens: most tokens per reply.
        temperature: 0 for greedy replies.
        top_p: nucleus sampling mass.
        seed: sampler seed for reproducible sessions.
        stdin: input stream (default `sys.stdin`).
        stdout: output stream (default `sys.stdout`).
    """
    engine = open_engine(TransformersBackend(batching=False), model_dir)  # one user: nothing to batch
    params = SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    return chat_loop(engine, params, stdin or sys.stdin, stdout or sys.stdout, system=system)
