"""The Python Claude Agent SDK's query() through Airlock, unchanged but for the environment
(ANTHROPIC_BASE_URL, and ANTHROPIC_AUTH_TOKEN or an apiKeyHelper in the HOME's settings).

One agent turn with a tool round trip: the mock upstream asks for a Bash call, the SDK's
bundled Claude Code runs it, sends the tool_result back, and the mock ends the turn quoting
the tool's output. Prints ALL CHECKS PASSED when the whole loop completed.
"""

import sys

import anyio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ResultMessage,
    TextBlock,
    ToolUseBlock,
    query,
)

MARKER = sys.argv[1] if len(sys.argv) > 1 else "agent-sdk-ok"


async def main():
    options = ClaudeAgentOptions(
        # Pre-approved, so no permission prompt (bypassPermissions is refused to root).
        allowed_tools=["Bash"],
        max_turns=4,
    )
    prompt = f"Run the command. [[mock scenario=tool_use; tool=Bash; command=echo {MARKER}]]"
    texts, tool_uses, result = [], 0, None
    async for message in query(prompt=prompt, options=options):
        if isinstance(message, AssistantMessage):
            for block in message.content:
                if isinstance(block, TextBlock):
                    texts.append(block.text)
                elif isinstance(block, ToolUseBlock):
                    tool_uses += 1
        elif isinstance(message, ResultMessage):
            result = message
    assert tool_uses == 1, f"expected one tool call, saw {tool_uses}"
    assert any(f"The tool returned: {MARKER}" in t for t in texts), texts
    assert result is not None and not result.is_error, result
    print("ALL CHECKS PASSED")


anyio.run(main)
