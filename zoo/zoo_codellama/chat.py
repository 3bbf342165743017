"""Code Llama - Instruct chat templates, built at token level as Meta does.

7B/13B/34B Instruct use Llama 2's ``[INST]`` template: each finished
user/assistant exchange is its own ``<s>…</s>`` sequence and the system
prompt is folded into the first user message. 70B Instruct uses turns of
``Source: <role>`` headers closed by a ``<step>`` id, and stops at ``<step>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from codellama_zoo import hookimpl
from codellama_zoo.errors import UsageError
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import PromptFormatSpec

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
ROLES = ("system", "user", "assistant")


def _check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Plain dicts, roles known, ``[system] user (assistant user)*`` order."""
    out = []
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise UsageError(
                f"chat message {i} is {dict(message)!r}; each message needs a role in {ROLES} and a string content"
            )
        out.append({k: str(v) for k, v in message.items() if v is not None})
    turns = out[1:] if out and out[0]["role"] == "system" else out
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(turns))]
    if not turns or [m["role"] for m in turns] != expected or turns[-1]["role"] != "user":
        got = " -> ".join(m["role"] for m in out) or "no messages"
        raise UsageError(
            f"chat messages go [system,] user, assistant, user, ... and end with a user message; got {got}"
        )
    return out


def build_instruct(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """Llama 2 / Code Llama ``[INST]`` dialog ids (Meta's ``chat_completion``)."""
    dialog = _check_messages(messages)
    if dialog[0]["role"] == "system":
        first = dialog[1]
        dialog = [{"role": "user", "content": B_SYS + dialog[0]["content"] + E_SYS + first["content"]}, *dialog[2:]]
    ids: list[int] = []
    for user, answer in zip(dialog[:-1:2], dialog[1::2], strict=True):
        text = f"{B_INST} {user['content'].strip()} {E_INST} {answer['content'].strip()} "
        ids += tokenizer.encode(text, bos=True, eos=True)
    ids += tokenizer.encode(f"{B_INST} {dialog[-1]['content'].strip()} {E_INST}", bos=True, eos=False)
    return ids


def build_instruct_70b(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """70B Instruct's ``Source: …`` turns closed by ``<step>`` (Meta's ``dialog_prompt_tokens``)."""
    dialog = _check_messages(messages)
    if dialog[0]["role"] != "system":
        dialog = [{"role": "system", "content": ""}, *dialog]
    step = tokenizer.require("step")
    ids = [tokenizer.bos_id]
    for message in dialog:
        header = f" Source: {message['role'].strip()}"
        if "destination" in message:
            header += f"\nDestination: {message['destination'].strip()}"
        ids += tokenizer.encode(header)
        if message["content"]:
            ids += tokenizer.encode("\n\n " + message["content"].strip())
        ids.append(step)
    ids += tokenizer.encode(" Source: assistant\nDestination: user")
    ids += tokenizer.encode("\n\n ")
    return ids


@hookimpl
def register_prompt_formats(register: Register) -> None:
    register(
        PromptFormatSpec(
            name="codellama-instruct",
            kind="chat",
            description="Code Llama - Instruct 7B/13B/34B: <s>[INST] <<SYS>>…<</SYS>> … [/INST] … </s>",
            build=build_instruct,
        )
    )
    register(
        PromptFormatSpec(
            name="codellama-70b-instruct",
            kind="chat",
            description="Code Llama - Instruct 70B: 'Source: role' turns separated by <step>",
            build=build_instruct_70b,
            stop_tokens=("<step>",),
        )
    )
