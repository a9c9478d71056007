"""One call through Airlock that its policy holds for a reviewer, made with the Python
`anthropic` SDK unchanged: argv[1] is the prompt, argv[2] `1` to stream. Prints one line,
`RESULT {json}`: the reply text, or the status and message of the error the SDK raised.
"""

import json
import sys

import anthropic

MODEL = "claude-sonnet-4-5"


def main():
    prompt, stream = sys.argv[1], sys.argv[2] == "1"
    client = anthropic.Anthropic(max_retries=0, timeout=120)
    messages = [{"role": "user", "content": prompt}]
    try:
        if stream:
            with client.messages.stream(model=MODEL, max_tokens=64, messages=messages) as s:
                text = "".join(s.text_stream)
        else:
            msg = client.messages.create(model=MODEL, max_tokens=64, messages=messages)
            text = "".join(b.text for b in msg.content if b.type == "text")
        result = {"ok": True, "text": text}
    except anthropic.APIStatusError as e:
        result = {"ok": False, "status": e.status_code, "message": e.message}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
