// @anthropic-ai/sdk, unchanged but for base URL and token, through Airlock.
// Run by the e2e test binary; prints ALL CHECKS PASSED and exits 0 only if every check held.
// ES modules ignore NODE_PATH: resolve the SDK from the directory the test runner installed.
import { createRequire } from "node:module";
const require = createRequire(`${process.env.NODE_PATH}/`);
const sdk = require("@anthropic-ai/sdk");
const Anthropic = sdk.default ?? sdk.Anthropic ?? sdk;

const MODEL = "claude-sonnet-4-5";
const HELLO = [{ role: "user", content: "Hello" }];

function check(cond, what) {
  if (!cond) {
    console.log(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const client = new Anthropic({ maxRetries: 0 });

const msg = await client.messages.create({ model: MODEL, max_tokens: 64, messages: HELLO });
check(msg.content[0].text === "Hello from the Airlock mock upstream.", "non-streaming text");

let text = "";
const stream = client.messages.stream(
  { model: MODEL, max_tokens: 64, messages: HELLO },
  { headers: { "x-mock": "scenario=text; chunk=3" } },
);
stream.on("text", (t) => (text += t));
const final = await stream.finalMessage();
check(text === "Hello from the Airlock mock upstream.", "streamed text reassembled");
check(final.stop_reason === "end_turn", "stream stop_reason");

const toolStream = client.messages.stream(
  { model: MODEL, max_tokens: 64, messages: HELLO },
  { headers: { "x-mock": "scenario=tool_use; chunk=4" } },
);
const toolFinal = await toolStream.finalMessage();
const tool = toolFinal.content.filter((b) => b.type === "tool_use");
check(tool.length === 1 && tool[0].input.command === "echo hello", "tool_use input reassembled");

const thinkStream = client.messages.stream(
  { model: MODEL, max_tokens: 2048, messages: HELLO, thinking: { type: "enabled", budget_tokens: 1024 } },
  { headers: { "x-mock": "scenario=thinking; chunk=6" } },
);
const thinkFinal = await thinkStream.finalMessage();
const thinking = thinkFinal.content.filter((b) => b.type === "thinking");
check(thinking.length === 1 && thinking[0].signature.startsWith("EqQB"), "thinking with signature");

const count = await client.messages.countTokens({ model: MODEL, messages: HELLO });
check(count.input_tokens > 0, "count_tokens");

const models = await client.models.list();
check(models.data[0].id === "claude-sonnet-4-5", "models list");
check((await client.models.retrieve("claude-haiku-4-5")).id === "claude-haiku-4-5", "model retrieve");

try {
  await client.messages.create({ model: MODEL, max_tokens: 64, messages: HELLO }, { headers: { "x-mock": "scenario=error; status=529" } });
  check(false, "529 raised");
} catch (e) {
  check(e.status === 529, "upstream 529 surfaces as status 529");
}

const expired = new Anthropic({ apiKey: process.env.AIRLOCK_BAD_TOKEN, maxRetries: 0 });
try {
  await expired.messages.create({ model: MODEL, max_tokens: 64, messages: HELLO });
  check(false, "expired token refused");
} catch (e) {
  check(e.status === 401, "expired token: 401");
}

console.log("ALL CHECKS PASSED");
