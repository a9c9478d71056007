"""Policy outcomes as a real client sees them: the Python `anthropic` SDK through Airlock,
with the e2e policy (crates/airlock/tests/e2e/policy.rs). Prints ALL CHECKS PASSED and exits
0 only if every check held.
"""

import sys

import anthropic

MODEL = "claude-sonnet-4-5"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def user(text):
    return [{"role": "user", "content": text}]


def text_of(msg):
    return "".join(b.text for b in msg.content if b.type == "text")


def main():
    client = anthropic.Anthropic(max_retries=0)

    # A credential in the prompt: 403 permission_error naming the rule and its message.
    try:
        client.messages.create(model=MODEL, max_tokens=64, messages=user("key AKIAIOSFODNN7EXAMPLE"))
        check(False, "credential denied")
    except anthropic.PermissionDeniedError as e:
        check("no-credentials" in e.message and "Remove credentials" in e.message, f"credential denied: {e.message}")
        check(e.response.headers.get("x-should-retry") == "false", "denial says do not retry")

    # A model outside the caller's allowance: 400 invalid_request_error.
    try:
        client.messages.create(model="claude-opus-4-5", max_tokens=64, messages=user("hi"))
        check(False, "model denied")
    except anthropic.BadRequestError as e:
        check("claude-opus-4-5" in e.message, f"model denied: {e.message}")

    # Over the max_tokens cap: clamped, the call succeeds (the test checks what was sent).
    msg = client.messages.create(model=MODEL, max_tokens=5000, messages=user("clamp me"))
    check(msg.type == "message", "max_tokens clamped, call succeeds")

    # Redacted before forwarding: the echo shows what the model saw.
    msg = client.messages.create(model=MODEL, max_tokens=64, messages=user("[[mock scenario=echo]] mail jane@example.com"))
    check("[EMAIL]" in text_of(msg) and "jane@" not in text_of(msg), f"request redacted: {text_of(msg)!r}")

    # A pseudonym goes out, the caller's own value comes back.
    msg = client.messages.create(model=MODEL, max_tokens=64, messages=user("[[mock scenario=echo]] my ssn is 078-05-1120"))
    check("078-05-1120" in text_of(msg) and "<US_SSN_" not in text_of(msg), f"pseudonym restored: {text_of(msg)!r}")

    # Values split across many SSE deltas reach the client masked, exactly.
    secret_text = "Contact bob@example.com, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE. Done."
    with client.messages.stream(
        model=MODEL, max_tokens=64, messages=user("write"),
        extra_headers={"x-mock": f"scenario=text; chunk=3; text={secret_text}"},
    ) as stream:
        deltas = [t for t in stream.text_stream]
        final = stream.get_final_message()
    streamed = "".join(deltas)
    check(streamed == "Contact [EMAIL], card [CREDIT_CARD], key [AWS_ACCESS_KEY]. Done.", f"stream masked: {streamed!r}")
    check(text_of(final) == streamed, "final message equals the deltas")
    check(all("bob@" not in d and "4111" not in d and "AKIA" not in d for d in deltas), "no raw fragment in any delta")

    # dry_run: recorded, not enforced.
    msg = client.messages.create(model=MODEL, max_tokens=64, messages=user("the merger plan"))
    check(msg.type == "message", "dry_run rule does not block")

    # A destructive tool call: streamed, the call never arrives, the stream ends in an error.
    tool = [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]
    got_tool = False
    try:
        with client.messages.stream(
            model=MODEL, max_tokens=64, messages=user("clean up"), tools=tool,
            extra_headers={"x-mock": "scenario=tool_use; tool=Bash; command=rm -rf /"},
        ) as stream:
            for event in stream:
                if event.type == "content_block_stop" and getattr(event.content_block, "type", "") == "tool_use":
                    got_tool = True
        check(False, "blocked tool call ends the stream with an error")
    except anthropic.APIStatusError as e:
        check("no-rm" in str(e), f"blocked tool call (stream): {e}")
    check(not got_tool, "the blocked call never reached the client")

    # The same call without streaming: 403.
    try:
        client.messages.create(
            model=MODEL, max_tokens=64, messages=user("clean up"), tools=tool,
            extra_headers={"x-mock": "scenario=tool_use; tool=Bash; command=rm -rf /"},
        )
        check(False, "blocked tool call (json)")
    except anthropic.PermissionDeniedError as e:
        check("no-rm" in e.message, f"blocked tool call (json): {e.message}")

    # A harmless call streams through whole, held only until its block stops.
    with client.messages.stream(
        model=MODEL, max_tokens=64, messages=user("list"), tools=tool,
        extra_headers={"x-mock": "scenario=tool_use; tool=Bash; command=ls -la"},
    ) as stream:
        final = stream.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    check(len(calls) == 1 and calls[0].input.get("command") == "ls -la", f"allowed tool call intact: {calls}")

    # An agent's growing history, sent twice through the SDK: the test compares what the
    # upstream received (the redacted first turn must be byte-identical both times).
    history = user("history-marker: I am jane@example.com, ssn 078-05-1120")
    first = client.messages.create(model=MODEL, max_tokens=64, messages=history)
    history = history + [{"role": "assistant", "content": text_of(first)}, {"role": "user", "content": "history-marker: and bob@example.com"}]
    second = client.messages.create(model=MODEL, max_tokens=64, messages=history)
    check(second.type == "message", "a growing conversation goes through")

    print("ALL CHECKS PASSED")


main()
