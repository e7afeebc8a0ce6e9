"""`loom serve` on the CPU fixture driven by the official `openai` Python client (issue 17).

Run by CTest (tests/CMakeLists.txt) with the interpreter of the virtual environment that
scripts/setup.sh makes (third_party/venv, holding the pinned openai package):
    python tests/server/openai_client_test.py --loom build/loom --data tests/data
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
import unittest

try:
    import jsonschema
    import openai
except ImportError:  # a clear failure, not a skip: CI must have them
    sys.exit("openai_client_test: the openai or jsonschema package is missing; run scripts/setup.sh "
             "(it installs the pinned packages into third_party/venv)")

ARGS = None
SERVER = None
BASE = None
MODEL = "tiny-moe"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def setUpModule():
    global SERVER, BASE
    data = ARGS.data
    SERVER = subprocess.Popen(
        [ARGS.loom, "serve", "--model-path", os.path.join(data, "models/tiny-qwen3-moe-realvocab"),
         "--tokenizer", os.path.join(data, "tokenizers/qwen3"), "--port", "0", "--served-model-name", MODEL,
         "--tool-call-parser", "qwen3", "--reasoning-parser", "qwen3", "--max-total-tokens", "16384"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = SERVER.stderr.readline()
        if not line:
            raise RuntimeError("loom serve exited before listening")
        m = re.search(r"listening on (http://[\d.]+:\d+)", line)
        if m:
            BASE = m.group(1)
            return
    raise RuntimeError("loom serve did not start listening in time")


def tearDownModule():
    if SERVER:
        SERVER.terminate()
        SERVER.wait(timeout=60)
        # SIGTERM ends loom serve with 0; anything else (a sanitizer's report at exit, say: the
        # ASan job of scripts/test_sanitizers.sh runs this test) fails the test, with the report.
        if SERVER.returncode != 0:
            raise RuntimeError(f"loom serve exited with status {SERVER.returncode}:\n{SERVER.stderr.read()[-8000:]}")


def client():
    return openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=120)


MESSAGES = [{"role": "user", "content": "Say hello in three words."}]
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}

# Bounded, so that even random weights finish well inside max_tokens.
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "member": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["name", "age", "member", "tags"],
    "additionalProperties": False,
}
CLOCK_TOOL = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {}}}}
CITY_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Tokyo", "Lima"]}},
                   "required": ["city"]}}}


class OpenAIClient(unittest.TestCase):
    def test_models(self):
        self.assertEqual([m.id for m in client().models.list().data], [MODEL])

    def test_chat_and_streamed_chat_agree(self):
        c = client()
        r = c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=12, temperature=0)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertIsInstance(r.choices[0].message.content, str)
        self.assertEqual(r.usage.completion_tokens, 12)
        self.assertEqual(r.choices[0].finish_reason, "length")
        text, usage, finish = "", None, None
        for chunk in c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=12, temperature=0,
                                               stream=True, stream_options={"include_usage": True}):
            if chunk.usage:
                usage = chunk.usage
            for ch in chunk.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
        self.assertEqual(text, r.choices[0].message.content)
        self.assertEqual(finish, "length")
        self.assertEqual(usage.completion_tokens, 12)

    def test_n_three_choices(self):
        r = client().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, n=3, seed=7,
                                             temperature=1.0)
        self.assertEqual(sorted(ch.index for ch in r.choices), [0, 1, 2])
        self.assertEqual(r.usage.completion_tokens, 18)

    def test_completion_with_logprobs(self):
        r = client().completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4,
                                        temperature=0, logprobs=3)
        lp = r.choices[0].logprobs
        self.assertEqual(len(lp.tokens), 4)
        self.assertTrue(all(len(t) == 3 for t in lp.top_logprobs))
        self.assertTrue(all(x <= 0 for x in lp.token_logprobs))

    def test_tools_and_reasoning_fields(self):
        r = client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                             tools=[WEATHER], tool_choice="auto", max_tokens=16, temperature=0)
        m = r.choices[0].message
        self.assertIn("reasoning_content", m.model_extra)  # the reasoning parser is on
        if m.tool_calls:  # random weights rarely write a call; when they do it must be well formed
            self.assertEqual(r.choices[0].finish_reason, "tool_calls")
            for call in m.tool_calls:
                self.assertEqual(call.type, "function")
        # A tool-call round trip in the history renders through the chat template.
        history = [{"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 18}"}]
        r2 = client().chat.completions.create(model=MODEL, messages=history, tools=[WEATHER], max_tokens=8,
                                              temperature=0)
        self.assertGreater(r2.usage.prompt_tokens, 20)

    def test_json_schema_outputs_always_validate(self):
        """100 requests with response_format json_schema, sampled from random weights: 100 valid."""
        fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}

        def ask(i):
            r = client().chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Invent person number {i}."}],
                response_format=fmt, max_tokens=300, temperature=1.0, seed=i, extra_body=NO_THINKING)
            return r.choices[0]

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            choices = list(pool.map(ask, range(100)))
        valid = 0
        for ch in choices:
            self.assertEqual(ch.finish_reason, "stop", ch.message.content)
            jsonschema.validate(json.loads(ch.message.content), PERSON)
            valid += 1
        self.assertEqual(valid, 100)

    def test_json_schema_after_reasoning(self):
        """With thinking on, the grammar starts after </think>: the thought is free, the answer JSON."""
        think_end = 151668
        counts = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9},
                                                    "ok": {"type": "boolean"}}, "required": ["n", "ok"]}
        r = client().chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=200, temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "counts", "schema": counts}},
            logit_bias={str(think_end): 100})  # ends the thought at once: no JSON allows that token later
        text = r.choices[0].message.content
        self.assertTrue(text.startswith("</think>"), text)  # not JSON: the grammar was not on yet
        jsonschema.validate(json.loads(text[len("</think>"):]), counts)
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_forced_tool_call(self):
        for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
            r = client().chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Weather?"}], tools=[CITY_TOOL, CLOCK_TOOL],
                tool_choice=choice, max_tokens=200, temperature=1.0, seed=3, extra_body=NO_THINKING)
            ch = r.choices[0]
            self.assertEqual(ch.finish_reason, "tool_calls")
            self.assertEqual(len(ch.message.tool_calls), 1)
            call = ch.message.tool_calls[0]
            self.assertTrue(call.id)
            self.assertIn(call.function.name, ("get_weather", "get_time"))
            if isinstance(choice, dict):
                self.assertEqual(call.function.name, "get_weather")
            tool = CITY_TOOL if call.function.name == "get_weather" else CLOCK_TOOL
            jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
            # Streamed, the call comes as delta.tool_calls fragments.
            name, args, finish, pieces = "", "", None, 0
            for chunk in client().chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "Weather?"}], tools=[CITY_TOOL],
                    tool_choice=choice, max_tokens=200, temperature=1.0, seed=3, stream=True, extra_body=NO_THINKING):
                for c in chunk.choices:
                    for tc in c.delta.tool_calls or []:
                        name += tc.function.name or ""
                        args += tc.function.arguments or ""
                        pieces += bool(tc.function.arguments)
                    finish = c.finish_reason or finish
            self.assertEqual(name, "get_weather")
            jsonschema.validate(json.loads(args), CITY_TOOL["function"]["parameters"])
            self.assertGreater(pieces, 1)  # the arguments stream as they are written
            self.assertEqual(finish, "tool_calls")

    def test_reasoning_split(self):
        """A reasoning model's <think> part goes to reasoning_content (the text forced by a grammar)."""
        r = client().chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=40, extra_body={
                **NO_THINKING, "ebnf": 'root ::= "<think>\\nplan it\\n</think>\\n\\nHello there"'})
        m = r.choices[0].message
        self.assertEqual(m.model_extra.get("reasoning_content").strip(), "plan it")
        self.assertEqual(m.content.strip(), "Hello there")

    def test_bad_input_is_a_400(self):
        c = client()
        with self.assertRaises(openai.BadRequestError) as e:
            c.chat.completions.create(model=MODEL, messages=MESSAGES, response_format={
                "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 3,
                                                                              "maximum": 1}}})
        self.assertEqual(e.exception.body.get("param"), "response_format")
        with self.assertRaises(openai.BadRequestError) as e:
            c.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[WEATHER],
                                      tool_choice={"type": "function", "function": {"name": "missing"}})
        self.assertEqual(e.exception.body.get("param"), "tool_choice")
        with self.assertRaises(openai.BadRequestError) as e:
            c.chat.completions.create(model=MODEL, messages=MESSAGES, n=17)
        self.assertEqual(e.exception.body.get("param"), "n")
        with self.assertRaises(openai.NotFoundError):
            c.chat.completions.create(model="no-such-model", messages=MESSAGES)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--loom", required=True)
    p.add_argument("--data", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
