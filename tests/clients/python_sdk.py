"""The Python `anthropic` SDK, unchanged but for base URL and token, through Airlock.

Run by the e2e test binary with ANTHROPIC_BASE_URL (the gateway) and ANTHROPIC_API_KEY (an
Airlock session token). 1.x sends it as x-api-key with 2023-06-01; 2.x as Bearer with
2026-10-21. Prints ALL CHECKS PASSED and exits 0 only if every check held.
"""

import os
import sys

import anthropic

MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "Hello"}]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def main():
    major = anthropic.__version__.split(".")[0]
    check(major == os.environ["EXPECT_SDK_MAJOR"], f"anthropic SDK major version {anthropic.__version__}")
    client = anthropic.Anthropic(max_retries=0)

    msg = client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    check(msg.content[0].text == "Hello from the Airlock mock upstream.", "non-streaming text")
    check(msg.usage.output_tokens == 12, "usage parsed")
    check(msg._request_id == "req_mock_000000", "request-id passed back")

    with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO,
                                extra_headers={"x-mock": "scenario=text; chunk=3"}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(text == "Hello from the Airlock mock upstream.", "streamed text reassembled")
    check(final.stop_reason == "end_turn", "stream stop_reason")

    with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO,
                                extra_headers={"x-mock": "scenario=tool_use; chunk=4"}) as stream:
        final = stream.get_final_message()
    tool = [b for b in final.content if b.type == "tool_use"]
    check(len(tool) == 1 and tool[0].input == {"command": "echo hello", "description": "Print a greeting"},
          "tool_use input reassembled from input_json_delta")
    check(final.stop_reason == "tool_use", "tool_use stop_reason")

    with client.messages.stream(model=MODEL, max_tokens=2048, messages=HELLO,
                                thinking={"type": "enabled", "budget_tokens": 1024},
                                extra_headers={"x-mock": "scenario=thinking; chunk=6"}) as stream:
        final = stream.get_final_message()
    thinking = [b for b in final.content if b.type == "thinking"]
    check(len(thinking) == 1 and thinking[0].signature.startswith("EqQB"), "thinking with signature")

    count = client.messages.count_tokens(model=MODEL, messages=HELLO)
    check(count.input_tokens > 0, "count_tokens")

    models = client.models.list()
    check([m.id for m in models.data][:1] == ["claude-sonnet-4-5"], "models list")
    check(client.models.retrieve("claude-haiku-4-5").id == "claude-haiku-4-5", "model retrieve")

    try:
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO,
                               extra_headers={"x-mock": "scenario=error; status=529"})
        check(False, "529 raised")
    except anthropic.APIStatusError as e:
        check(e.status_code == 529, "upstream 529 surfaces as APIStatusError 529")

    try:
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO,
                               extra_headers={"x-mock": "scenario=error; status=429; retry_after=1"})
        check(False, "429 raised")
    except anthropic.RateLimitError as e:
        check(e.response.headers.get("retry-after") == "1", "429 with retry-after")

    try:
        with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO,
                                    extra_headers={"x-mock": "scenario=midstream_error; after=4"}) as stream:
            for _ in stream:
                pass
        check(False, "mid-stream error raised")
    except anthropic.APIStatusError as e:
        check("Overloaded" in str(e), "mid-stream error event raises")

    expired = anthropic.Anthropic(api_key=os.environ["AIRLOCK_BAD_TOKEN"], max_retries=0)
    try:
        expired.messages.create(model=MODEL, max_tokens=64, messages=HELLO)
        check(False, "expired token refused")
    except anthropic.AuthenticationError as e:
        check(e.status_code == 401 and e.response.headers.get("x-should-retry") == "false",
              "expired token: 401 with x-should-retry false")

    print("ALL CHECKS PASSED")


if __name__ == "__main__":
    main()
