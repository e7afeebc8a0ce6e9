#!/usr/bin/env python3
"""Writes tests/tokenizer/jinja_golden.json: chat-template renderings made by Python Jinja2 with
the settings Hugging Face transformers uses (trim_blocks, lstrip_blocks, loop controls, its tojson
and raise_exception). loom's Jinja engine must reproduce every one. Run from the repo root:
    python3 scripts/make_jinja_golden.py
"""
import json
import pathlib

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parent.parent


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


QWEN3 = json.loads((ROOT / "tests/data/tokenizers/qwen3/tokenizer_config.json").read_text())["chat_template"]

# deepseek-ai/DeepSeek-V3 tokenizer_config.json (first release).
DEEPSEEK_V3 = (
    "{% set ns = namespace(found=false, is_first=false, is_tool=false) %}\n{%- for message in messages %}\n"
    "  {%- if message['role'] == 'system' %}\n    {{ '<｜begin▁of▁sentence｜><｜system｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}\n"
    "  {%- elif message['role'] == 'user' %}\n    {%- if message.get('content') and message.get('tool_results') %}\n"
    "      {{ '<｜begin▁of▁sentence｜><｜User｜>' + message['content'] }}\n      {%- for result in message['tool_results'] %}\n"
    "        {{ '\n<｜tool▁result▁begin｜>' + result['name'] + '\n```json\n' + result['result'] + '\n```<｜tool▁result▁end｜>' }}\n"
    "      {%- endfor %}\n      {{ '<｜end▁of▁sentence｜>' }}\n    {%- elif message.get('content') %}\n"
    "      {{ '<｜begin▁of▁sentence｜><｜User｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}\n    {%- endif %}\n"
    "  {%- elif message['role'] == 'assistant' %}\n    {%- if message.get('content') is none or message.get('content') == '' %}\n"
    "      {%- set ns.is_tool = false -%}\n      {%- for tool in message.get('tool_calls', []) %}\n        {%- if not ns.is_first %}\n"
    "          {{ '<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n```json\n' + (tool['function']['arguments']|tojson) + '\n```<｜tool▁call▁end｜>' }}\n"
    "          {%- set ns.is_first = true -%}\n        {%- else %}\n"
    "          {{ '\n<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n```json\n' + (tool['function']['arguments']|tojson) + '\n```<｜tool▁call▁end｜>' }}\n"
    "          {{ '<｜tool▁calls▁end｜><｜end▁of▁sentence｜>' }}\n        {%- endif %}\n      {%- endfor %}\n    {%- else %}\n"
    "      {{ '<｜begin▁of▁sentence｜><｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}\n    {%- endif %}\n"
    "  {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n  {{ '<｜begin▁of▁sentence｜><｜Assistant｜>' }}\n{%- endif %}\n"
)

# mistralai/Mixtral-8x7B-Instruct-v0.1
MIXTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city — in °C",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
                       "required": ["city"]},
    },
}

CASES = [
    ("qwen3_tools_multi_turn", QWEN3, {
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": "<think>\nNeed two calls.\n</think>\n\nLet me check.",
             "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}},
                            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "content": "{\"temp\": 21.5}"},
            {"role": "tool", "content": "{\"temp\": -3}"},
            {"role": "assistant", "content": "Paris is warm, Oslo is cold."},
            {"role": "user", "content": "Thanks! 谢谢 😀"},
        ],
        "tools": [WEATHER_TOOL], "add_generation_prompt": True}),
    ("qwen3_tools_no_system_thinking_off", QWEN3, {
        "messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER_TOOL], "add_generation_prompt": True,
        "enable_thinking": False}),
    ("qwen3_reasoning_content_last_turn", QWEN3, {
        "messages": [{"role": "user", "content": "q"},
                     {"role": "assistant", "content": "\n\nanswer", "reasoning_content": "\nthought\n"}],
        "tools": None, "add_generation_prompt": False}),
    ("qwen3_tool_response_is_not_a_query", QWEN3, {
        "messages": [{"role": "user", "content": "q"},
                     {"role": "assistant", "content": "<think>a</think>b", "tool_calls": [{"name": "f", "arguments": {}}]},
                     {"role": "user", "content": "<tool_response>r</tool_response>"},
                     {"role": "assistant", "content": "<think>c</think>d"}],
        "tools": None, "add_generation_prompt": False}),
    ("deepseek_v3_tools", DEEPSEEK_V3, {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "Find it"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"type": "function", "function": {"name": "search", "arguments": {"q": "x", "n": 3}}},
                            {"type": "function", "function": {"name": "search", "arguments": {"q": "y"}}}]},
            {"role": "user", "content": "results", "tool_results": [{"name": "search", "result": "[1, 2]"}]},
            {"role": "assistant", "content": "Done."},
        ],
        "bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>", "add_generation_prompt": True}),
    ("mixtral_alternating", MIXTRAL, {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                     {"role": "user", "content": "Bye"}],
        "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": True}),
    ("mixtral_roles_must_alternate", MIXTRAL, {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "again"}],
        "bos_token": "<s>", "eos_token": "</s>"}),
    ("loop_variables",
     "{% for x in items %}{{ loop.index }}/{{ loop.length }}:{{ x }}{% if loop.first %}F{% endif %}"
     "{% if loop.last %}L{% endif %}({{ loop.revindex0 }},{{ loop.previtem }}) {% endfor %}",
     {"items": ["a", "b", "c"]}),
    ("for_else_filter_break_continue",
     "{% for x in xs if x > 1 %}{% if x == 3 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }},{% else %}none{% endfor %}"
     "|{% for y in [] %}{{ y }}{% else %}empty{% endfor %}",
     {"xs": [1, 2, 3, 4, 5, 6]}),
    ("slicing_and_indexing",
     "{{ s[::-1] }} {{ s[1:3] }} {{ s[-2:] }} {{ s[:-1] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[-1] }} {{ xs[1:] }} "
     "{{ s[0] }} {{ xs[5:1:-2] }} {{ 'héllo'[1:3] }} {{ 'héllo'|length }}",
     {"s": "abcdef", "xs": [1, 2, 3, 4, 5, 6]}),
    ("string_methods",
     "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ s.split() }}|{{ 'a,b,,c'.split(',') }}|"
     "{{ 'a b c'.split(' ', 1) }}|{{ s.startswith('  he') }}|{{ 'abc'.endswith(('x', 'bc')) }}|{{ 'Hello'.upper() }}|"
     "{{ 'Hello'.lower() }}|{{ 'hello world'.title() }}|{{ 'aXbXc'.replace('X', '-') }}|{{ 'abcabc'.find('c') }}|"
     "{{ 'abcabc'.count('bc') }}|{{ '-'.join(['a', 'b']) }}|{{ 'hello'.capitalize() }}|{{ 'a\\nb'.splitlines() }}",
     {"s": "  hello world \n"}),
    ("filters",
     "{{ xs|length }} {{ '  t  '|trim }} {{ missing|default('dflt') }} {{ ''|default('e', true) }} {{ xs|join(', ') }} "
     "{{ xs|first }} {{ xs|last }} {{ 'abc'|upper }} {{ 'ABC'|lower }} {{ xs|reverse|list }} {{ xs|sort }} "
     "{{ [3, 1, 2]|sort(reverse=true) }} {{ [1, 2, 2, 3, 1]|unique|list }} {{ '42'|int + 1 }} {{ '2.5'|float }} "
     "{{ 7|string ~ 'x' }} {{ 2.567|round(2) }} {{ -3|abs }} {{ xs|sum }} {{ xs|min }} {{ xs|max }} "
     "{{ people|map(attribute='name')|join('+') }} {{ people|selectattr('age', 'gt', 30)|map(attribute='name')|list }} "
     "{{ people|rejectattr('admin')|map(attribute='name')|list }} {{ d|dictsort }} {{ d|items|list }} "
     "{{ 'a b  c'|wordcount }} {{ 'x\\ny'|indent(2) }} {{ 'x\\ny'|indent(2, true) }} {{ 'a-b'|replace('-', '+') }} "
     "{{ [1, 0, 2]|select|list }} {{ 'hello world'|title }} {{ 'hi'|capitalize }}",
     {"xs": [3, 1, 2], "people": [{"name": "ann", "age": 40, "admin": True}, {"name": "bob", "age": 20},
                                 {"name": "cy", "age": 31}], "d": {"b": 1, "a": 2}}),
    ("tojson",
     "{{ obj|tojson }}\n{{ obj|tojson(indent=2) }}\n{{ 'quote \" backslash \\\\ tab \\t é'|tojson }}\n{{ [1.0, 0.1, 1e20, 1e-7, -0.0, 123456789.25]|tojson }}\n"
     "{{ none|tojson }} {{ true|tojson }} {{ {}|tojson }} {{ []|tojson }} {{ obj|tojson(sort_keys=true) }}",
     {"obj": {"z": 1, "a": [True, None, "ü"], "m": {"k": 2.5}}}),
    ("tests_and_operators",
     "{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ n is none }} {{ n is not none }} {{ s is string }} "
     "{{ 3 is number }} {{ 3 is integer }} {{ 3.0 is float }} {{ d is mapping }} {{ xs is iterable }} {{ b is true }} "
     "{{ b is false }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 2 is in xs }} {{ 'a' in s }} "
     "{{ 'z' not in s }} {{ 'k' in d }} {{ 1 in xs }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ xs == [1, 2] }} {{ not x }} "
     "{{ x and s }} {{ n or 'fallback' }} {{ 'yes' if x else 'no' }} {{ 'yes' if n else 'no' }} {{ 7 // 2 }} {{ -7 // 2 }} "
     "{{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 * 3 + 1 }} {{ 'ab' * 2 }} {{ 1 + 2.5 }} {{ 0.1 + 0.2 }} {{ 'a' ~ 1 ~ none }} "
     "{{ -x }} {{ xs + [3] }} {{ n }} {{ b }} {{ d }} {{ xs }} {{ 1e20 }} {{ 2 / 4 }} {{ 10 / 5 }} {{ 1.5e-7 }}",
     {"x": 5, "n": None, "s": "abc", "d": {"k": "v", "q": [1, 'x']}, "xs": [1, 2], "b": True}),
    ("namespace_set_scoping_macro",
     "{% set ns = namespace(count=0, names='') %}{% set outer = 'o' %}"
     "{% for p in people %}{% set ns.count = ns.count + 1 %}{% set outer = 'inner' %}{% set ns.names = ns.names ~ p.name %}{% endfor %}"
     "{{ ns.count }} {{ ns.names }} {{ outer }} {% set a, b = [1, 2] %}{{ a }}{{ b }} "
     "{% set block %}B{{ a }}{% endset %}{{ block }} "
     "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('x') }} {{ greet('y', punct='?') }} "
     "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k in d %}{{ k }}{% endfor %} "
     "{{ d.get('a') }} {{ d.get('zz', 'no') }} {{ d.keys()|list }} {{ d.values()|list }} {{ {'p': 1, 'q': [2]} }} "
     "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ dict(a=1) }}",
     {"people": [{"name": "a"}, {"name": "b"}], "d": {"a": 1, "b": 2}}),
    ("whitespace_control",
     "<{% if true %}\n  yes\n{% endif %}>\n  {% for i in [1, 2] %}\n    [{{ i }}]\n  {% endfor %}\n"
     "{#- comment -#}\n  after {{- ' tight ' -}}  end\n  {%+ if true %}kept-indent{% endif %}\n{% if true -%}\n   stripped\n{%- endif %}\n"
     "  {# indented comment #}\nline\n{{ 'x' }}\n{{- 'y' }}",
     {}),
]


def main():
    env = make_env()
    out = []
    for name, template, variables in CASES:
        case = {"name": name, "template": template, "variables": variables}
        try:
            case["expected"] = env.from_string(template).render(**variables)
        except jinja2.exceptions.TemplateError as e:
            case["error"] = str(e)
        out.append(case)
    path = ROOT / "tests/tokenizer/jinja_golden.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(out)} cases to {path}")


if __name__ == "__main__":
    main()
