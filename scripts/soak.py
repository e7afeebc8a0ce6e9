#!/usr/bin/env python3
"""Soak test of `loom serve` (issue 15): rounds of mixed requests, then checks at idle.

Each round sends its share of --num-requests at --concurrency, mixing
  completion, chat                  non-streamed answers, checked whole (200, n choices, finish reason, usage);
  stream_completion, stream_chat    streamed answers read to `data: [DONE]`, every event checked;
  aborted                           streams whose client closes the socket after its first few events;
  disconnected                      requests whose client closes the socket right after sending;
  malformed                         invalid JSON, wrong types, an unknown model, oversized values, ...:
                                    each must get its 4xx with the OpenAI error envelope {"error": {...}},
                                    never a 5xx or a dropped connection.
After each round it waits until the server is idle (nothing running or queued, every submitted
request finished) and reads /metrics: leaked KV pages, as the engine's idle leak check defines them
(pages neither free nor held by the prefix cache, plus cached pages still locked), must be 0, and
no response may have been a 5xx. Once the idle server has given its free heap back
(loom_heap_releases_total goes up a second after the engine goes idle), it reads the server's RSS
(VmRSS of /proc/PID/status); after the last round it must be within --rss-tolerance-pct of after
the first. Any failure makes the exit status 1, with a one-line reason last.

Python 3 standard library only. Starts `loom serve` itself on a free port (CPU, the tiny
real-vocabulary fixture by default) or attaches to --base-url (RSS only with --server-pid):
    python3 scripts/soak.py                                     # CI's size: 2,000 requests, 4 rounds
    python3 scripts/soak.py --num-requests 20000 --rounds 10    # the full soak, ~13 min on 2 cores
"""
import argparse
import collections
import concurrent.futures
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Share of each kind in a round (normalised).
MIX = {"completion": 12, "chat": 12, "stream_completion": 12, "stream_chat": 12, "aborted": 16,
       "disconnected": 12, "malformed": 24}
ANSWERED = ("completion", "chat", "stream_completion", "stream_chat", "malformed")  # latency counted

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hum old songs about rivers "
         "mountains clocks engines gardens ships lanterns maps bridges castles forests stars numbers letters "
         "tea bread salt iron glass paper silver copper winter summer north south east west").split()
SYSTEM_PROMPTS = [  # shared prefixes, so that the prefix cache fills, matches and evicts
    "You are a careful assistant for a railway museum. Answer in one short sentence and name the hall "
    "where each exhibit stands. Never invent exhibits; say so when you do not know.",
    "You are a terse librarian. Every answer cites a shelf number and a floor, and nothing else is said "
    "unless the reader asks twice. Be polite and brief.",
    "Translate the user's words into plain English, keep the tone, and keep numbers exactly as written.",
]


class Failure(Exception):
    """An outcome that breaks the soak's rules (the message says which)."""


class Dropped(Exception):
    """The server closed the connection before its answer was complete."""


# --- a small HTTP/1.1 client over a raw socket (so that the soak decides when a connection ends) ---

class Conn:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, method, path, body=b"", headers=None):
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.sock.getpeername()[0]}", "Connection: close"]
        if method == "POST":
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def close(self, reset=False):
        if reset:  # an abortive close (RST), as a killed client's kernel sends
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise Dropped("connection closed by the server")
        self.buf += data

    def read_head(self):
        """(status, headers with lower-case names)."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def body_pieces(self, headers):
        """Yields the de-chunked body as it arrives; raises Dropped if it ends early."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    self._more()
                line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._more()
                piece, self.buf = self.buf[:size], self.buf[size + 2:]
                if size == 0:
                    return
                yield piece
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                if not self.buf:
                    self._more()
                piece, self.buf = self.buf[:left], self.buf[left:]
                left -= len(piece)
                yield piece
        else:  # until the server closes
            while True:
                if self.buf:
                    piece, self.buf = self.buf, b""
                    yield piece
                try:
                    self._more()
                except Dropped:
                    return

    def read_body(self, headers):
        return b"".join(self.body_pieces(headers))


def sse_events(pieces):
    """Yields the `data:` payloads of an SSE body (comments skipped) from its pieces."""
    pending = b""
    for piece in pieces:
        pending += piece
        while b"\n\n" in pending:
            event, pending = pending.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    yield line[6:].decode("utf-8")
    if pending.strip():
        raise Failure(f"the stream ended inside an event: {pending[:80]!r}")


# --- requests ---

def words(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def sampling(rng, args, body, long=False):
    body["max_tokens"] = rng.randint(max(4, args.max_tokens), 4 * args.max_tokens) if long else rng.randint(1, args.max_tokens)
    if rng.random() < 0.5:
        body["temperature"] = 0
    else:
        body["temperature"] = rng.choice([0.7, 1.0])
        body["seed"] = rng.randrange(1 << 30)
        if rng.random() < 0.3:
            body["top_p"] = 0.9
    if long or rng.random() < 0.3:
        body["ignore_eos"] = True
    if rng.random() < 0.15:
        body["stop"] = [rng.choice(WORDS)]


def completion_body(rng, args, model, long=False):
    if rng.random() < 0.15:  # token ids rather than text
        prompt = [rng.randrange(100, 150000) for _ in range(rng.randint(1, 80))]
    else:
        prompt = (rng.choice(SYSTEM_PROMPTS) + " " if rng.random() < 0.5 else "") + words(rng, 1, 60)
    body = {"prompt": prompt}
    if model and rng.random() < 0.5:
        body["model"] = model
    sampling(rng, args, body, long)
    if not long and rng.random() < 0.15:
        body["n"] = 2
    if rng.random() < 0.1:
        body["logprobs"] = 2
    return body


def chat_body(rng, args, model, long=False):
    messages = []
    if rng.random() < 0.6:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    messages.append({"role": "user", "content": words(rng, 1, 40)})
    if rng.random() < 0.2:
        messages += [{"role": "assistant", "content": words(rng, 1, 10)}, {"role": "user", "content": words(rng, 1, 10)}]
    body = {"messages": messages}
    if model and rng.random() < 0.5:
        body["model"] = model
    sampling(rng, args, body, long)
    if rng.random() < 0.5:
        body["chat_template_kwargs"] = {"enable_thinking": False}
    if not long and rng.random() < 0.15:
        body["n"] = 2
    if rng.random() < 0.1:
        body.update(logprobs=True, top_logprobs=2)
    return body


def malformed_cases(oversized_body_bytes):
    """(name, method, path, body bytes, expected status) of every malformed request the soak sends."""
    def j(o):
        return json.dumps(o).encode()
    c, ch = "/v1/completions", "/v1/chat/completions"
    return [
        ("invalid_json", "POST", c, b'{"prompt": "hi", "max_tokens": ', 400),
        ("invalid_utf8", "POST", c, b'{"prompt": "\xff\xfe hi"}', 400),
        ("not_an_object", "POST", ch, b"[1, 2, 3]", 400),
        ("too_deep", "POST", c, b"[" * 200 + b"]" * 200, 400),
        ("max_tokens_string", "POST", c, j({"prompt": "hi", "max_tokens": "ten"}), 400),
        ("temperature_string", "POST", ch, j({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}), 400),
        ("messages_string", "POST", ch, j({"messages": "hello"}), 400),
        ("stream_string", "POST", c, j({"prompt": "hi", "stream": "yes"}), 400),
        ("content_number", "POST", ch, j({"messages": [{"role": "user", "content": 42}]}), 400),
        ("missing_prompt", "POST", c, j({"max_tokens": 4}), 400),
        ("unknown_model", "POST", c, j({"model": "no-such-model", "prompt": "hi", "max_tokens": 2}), 404),
        ("unknown_model_chat", "POST", ch, j({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}), 404),
        ("max_tokens_huge", "POST", c, j({"prompt": "hi", "max_tokens": 10 ** 9}), 400),
        ("max_tokens_beyond_int64", "POST", c, j({"prompt": "hi", "max_tokens": 10 ** 30}), 400),
        ("max_tokens_negative", "POST", c, j({"prompt": "hi", "max_tokens": -5}), 400),
        ("n_huge", "POST", ch, j({"messages": [{"role": "user", "content": "hi"}], "n": 1000}), 400),
        ("stop_oversized", "POST", c, j({"prompt": "hi", "stop": ["x" * 5000]}), 400),
        ("token_outside_vocab", "POST", c, j({"prompt": [1, 2, 999999999], "max_tokens": 2}), 400),
        ("prompt_beyond_context", "POST", c, j({"prompt": [100] * 50000, "max_tokens": 2}), 400),
        ("temperature_out_of_range", "POST", c, j({"prompt": "hi", "temperature": 50}), 400),
        ("logit_bias_bad_key", "POST", c, j({"prompt": "hi", "logit_bias": {"abc": 1}}), 400),
        ("regex_invalid", "POST", c, j({"prompt": "hi", "regex": "(unclosed", "max_tokens": 4}), 400),
        ("unknown_route", "POST", "/v1/nothing", j({"prompt": "hi"}), 404),
        ("body_oversized", "POST", c, b'{"prompt": "' + b"a" * oversized_body_bytes + b'"}', 413),
    ]


def run_request(kind, index, args, ctx):
    """Sends one request of `kind`; returns (outcome, latency in seconds or None when not answered,
    variant or ""). Raises Failure for a broken rule."""
    rng = random.Random(args.seed * 1_000_003 + index)
    t0 = time.monotonic()
    chat = kind.endswith("chat") or (kind in ("aborted", "disconnected") and rng.random() < 0.5)
    path = "/v1/chat/completions" if chat else "/v1/completions"
    conn = None
    try:
        conn = Conn(ctx.host, ctx.port, args.request_timeout)
        if kind == "malformed":
            name, method, mpath, body, expected = rng.choice(ctx.malformed)
            try:
                conn.send(method, mpath, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer (413) before reading all of a large body
            status, headers = conn.read_head()
            text = conn.read_body(headers)
            latency = time.monotonic() - t0
            if status >= 500 or status != expected:
                raise Failure(f"malformed {name}: status {status}, expected {expected}: {text[:200]!r}")
            try:
                err = json.loads(text)["error"]
                if not isinstance(err, dict) or not isinstance(err.get("message"), str) or "type" not in err:
                    raise ValueError("no message or type")
            except (ValueError, KeyError, TypeError) as e:
                raise Failure(f"malformed {name}: status {status} without the OpenAI error envelope ({e}): {text[:200]!r}")
            return "ok", latency, name

        body = chat_body(rng, args, ctx.model, long=kind in ("aborted", "disconnected")) if chat else \
            completion_body(rng, args, ctx.model, long=kind in ("aborted", "disconnected"))
        streamed = kind.startswith("stream") or kind == "aborted" or (kind == "disconnected" and rng.random() < 0.5)
        if streamed:
            body["stream"] = True
            if rng.random() < 0.5:
                body["stream_options"] = {"include_usage": True}
        conn.send("POST", path, json.dumps(body).encode())

        if kind == "disconnected":
            if rng.random() < 0.5:
                time.sleep(rng.random() * 0.05)  # gone while queued or decoding rather than at once
            conn.close(reset=rng.random() < 0.5)
            conn = None
            return "ok", None, "streamed" if streamed else "plain"

        status, headers = conn.read_head()
        if status != 200:
            text = conn.read_body(headers)
            raise Failure(f"{kind}: status {status}: {text[:300]!r}")
        n = body.get("n", 1)

        if kind == "aborted":
            keep = rng.randint(1, 3)
            seen = 0
            for data in sse_events(conn.body_pieces(headers)):
                if data == "[DONE]":
                    return "ok_finished_first", None, ""  # the answer ended before the client left
                check_chunk(kind, data)
                seen += 1
                if seen >= keep:
                    break
            else:
                raise Failure(f"{kind}: the stream ended without [DONE]")
            conn.close(reset=rng.random() < 0.5)
            conn = None
            return "ok", None, f"after {keep} events"

        if streamed:
            check_stream(kind, conn, headers, body, n)
        else:
            check_answer(kind, conn.read_body(headers), body, n, chat)
        return "ok", time.monotonic() - t0, ""
    except Failure:
        raise
    except Dropped as e:
        raise Failure(f"{kind}: dropped connection: {e}")
    except socket.timeout:
        raise Failure(f"{kind}: no answer within {args.request_timeout} s")
    except (ConnectionError, OSError) as e:
        raise Failure(f"{kind}: connection error: {e!r}")
    finally:
        if conn is not None:
            conn.close()


def check_chunk(kind, data):
    try:
        chunk = json.loads(data)
    except ValueError:
        raise Failure(f"{kind}: an event is not JSON: {data[:200]!r}")
    if "error" in chunk:
        raise Failure(f"{kind}: error event: {data[:300]}")
    if "choices" not in chunk:
        raise Failure(f"{kind}: event without choices: {data[:200]}")
    return chunk


def check_stream(kind, conn, headers, body, n):
    if not headers.get("content-type", "").startswith("text/event-stream"):
        raise Failure(f"{kind}: content type {headers.get('content-type')!r}")
    finished, usage, done = set(), None, False
    for data in sse_events(conn.body_pieces(headers)):
        if done:
            raise Failure(f"{kind}: an event after [DONE]: {data[:200]!r}")
        if data == "[DONE]":
            done = True
            continue
        chunk = check_chunk(kind, data)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk["choices"]:
            if c.get("finish_reason") is not None:
                if c["finish_reason"] not in ("stop", "length"):
                    raise Failure(f"{kind}: finish reason {c['finish_reason']!r}")
                finished.add(c["index"])
    if not done:
        raise Failure(f"{kind}: the stream ended without [DONE]")
    if finished != set(range(n)):
        raise Failure(f"{kind}: finish reasons for choices {sorted(finished)}, expected {n}")
    if body.get("stream_options", {}).get("include_usage"):
        if not usage or not 0 < usage["completion_tokens"] <= n * body["max_tokens"]:
            raise Failure(f"{kind}: usage {usage} for max_tokens {body['max_tokens']} and n {n}")


def check_answer(kind, text, body, n, chat):
    try:
        answer = json.loads(text)
    except ValueError:
        raise Failure(f"{kind}: the answer is not JSON: {text[:200]!r}")
    if answer.get("object") != ("chat.completion" if chat else "text_completion"):
        raise Failure(f"{kind}: object {answer.get('object')!r}")
    choices = answer.get("choices", [])
    if len(choices) != n:
        raise Failure(f"{kind}: {len(choices)} choices, expected {n}")
    for c in choices:
        if c.get("finish_reason") not in ("stop", "length"):
            raise Failure(f"{kind}: finish reason {c.get('finish_reason')!r}")
        content = c["message"]["content"] if chat else c["text"]
        if not isinstance(content, str):
            raise Failure(f"{kind}: the answer has no text: {c}")
    tokens = answer.get("usage", {}).get("completion_tokens", -1)
    if not 0 < tokens <= n * body["max_tokens"]:
        raise Failure(f"{kind}: {tokens} completion tokens for max_tokens {body['max_tokens']} and n {n}")


# --- the server: started here or attached to, /metrics, RSS ---

class Server:
    def __init__(self, args):
        self.proc, self.pid, self.log_path = None, args.server_pid, None
        self.log_tail = collections.deque(maxlen=40)
        if args.base_url:
            u = urllib.parse.urlparse(args.base_url)
            self.host, self.port = u.hostname, u.port or 80
            return
        fd, self.log_path = tempfile.mkstemp(prefix="loom_soak_serve_", suffix=".log")
        os.close(fd)
        cmd = [args.loom, "serve", "--model-path", args.model_path, "--tokenizer", args.tokenizer,
               "--device", "cpu", "--host", "127.0.0.1", "--port", "0"] + shlex.split(args.serve_args)
        print("soak: starting " + " ".join(shlex.quote(a) for a in cmd), flush=True)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     errors="replace")
        self.pid = self.proc.pid
        listening = threading.Event()
        found = {}

        def drain():  # keeps the pipe from filling; remembers the tail for failure reports
            with open(self.log_path, "w") as log:
                for line in self.proc.stderr:
                    log.write(line)
                    log.flush()
                    self.log_tail.append(line.rstrip("\n"))
                    m = re.search(r"listening on http://([^:\s]+):(\d+)", line)
                    if m and not listening.is_set():
                        found["host"], found["port"] = m.group(1), int(m.group(2))
                        listening.set()
            listening.set()

        threading.Thread(target=drain, daemon=True).start()
        if not listening.wait(args.start_timeout) or not found:
            self.proc.kill()
            raise Failure("loom serve did not start listening: " + " | ".join(list(self.log_tail)[-5:]))
        self.host, self.port = found["host"], found["port"]

    def alive(self):
        return self.proc is None or self.proc.poll() is None

    def get(self, path, timeout=30):
        conn = Conn(self.host, self.port, timeout)
        try:
            conn.send("GET", path)
            status, headers = conn.read_head()
            return status, conn.read_body(headers).decode("utf-8", "replace")
        finally:
            conn.close()

    def metrics(self):
        status, text = self.get("/metrics")
        if status != 200:
            raise Failure(f"/metrics answered {status}")
        values = collections.defaultdict(float)
        for line in text.splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$", line)
            if not m:
                continue
            name, labels, value = m.groups()
            if name == "loom_http_responses_total":
                code = re.search(r'code="(\d+)"', labels).group(1)
                name = f"http_{code[0]}xx"
            elif name == "loom_requests_finished_total":
                name = "finished_" + re.search(r'finish_reason="(\w+)"', labels).group(1)
            values[name] += float(value)
        return values

    def rss_kib(self):
        if not self.pid:
            return None
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def wait_idle(self, timeout):
        """Metrics once nothing runs or waits and every submitted request has finished, three reads
        in a row (a request the HTTP side is still parsing has not reached the engine yet)."""
        deadline, calm, m = time.monotonic() + timeout, 0, None
        while time.monotonic() < deadline:
            if not self.alive():
                raise Failure(f"loom serve exited with status {self.proc.returncode}")
            m = self.metrics()
            finished = sum(v for k, v in m.items() if k.startswith("finished_"))
            idle = m["loom_num_requests_running"] == 0 and m["loom_num_requests_waiting"] == 0 and \
                m["loom_requests_submitted_total"] == finished
            calm = calm + 1 if idle else 0
            if calm >= 3:
                return m
            time.sleep(0.1)
        raise Failure(f"the server is not idle {timeout} s after the round: {int(m['loom_num_requests_running'])} "
                      f"running, {int(m['loom_num_requests_waiting'])} waiting")

    def settle(self, idle_metrics, timeout=3.0):
        """Waits for the idle server to give its free heap back (loom_heap_releases_total goes up,
        1 s after the engine went idle; a server without that counter gets `timeout` seconds), so
        that RSS is read after it. Returns the metrics then."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if "loom_heap_releases_total" in idle_metrics and \
                    m["loom_heap_releases_total"] > idle_metrics["loom_heap_releases_total"]:
                return m
            if time.monotonic() >= deadline:
                return m
            time.sleep(0.1)

    def stop(self, timeout):
        """SIGTERM; the exit status (None when attached)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure(f"loom serve did not stop within {timeout} s of SIGTERM")
        return self.proc.returncode


# --- rounds and the report ---

def percentiles(values):
    """p50, p90 and p99 (linear interpolation, as `loom bench serving` computes them)."""
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    v = sorted(values)

    def at(p):
        pos = p / 100 * (len(v) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        return v[lo] + (v[hi] - v[lo]) * (pos - lo)
    return {"p50": at(50), "p90": at(90), "p99": at(99)}


def schedule(num, rng):
    """`num` kinds in the proportions of MIX, shuffled."""
    total = sum(MIX.values())
    kinds = []
    for k, share in MIX.items():
        kinds += [k] * (num * share // total)
    kinds += list(MIX)[: num - len(kinds)]  # the rounding's remainder, fewer than len(MIX)
    rng.shuffle(kinds)
    return kinds


def run_round(r, first_index, count, args, ctx, server):
    kinds = schedule(count, random.Random(args.seed * 7919 + r))
    outcomes, variants = collections.Counter(), collections.Counter()
    latencies = collections.defaultdict(list)
    failures = []
    before = server.metrics()
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        futures = {pool.submit(run_request, kind, first_index + i, args, ctx): kind for i, kind in enumerate(kinds)}
        for f in concurrent.futures.as_completed(futures):
            kind = futures[f]
            try:
                outcome, latency, variant = f.result()
                outcomes[f"{kind}:{outcome}"] += 1
                if variant:
                    variants[f"{kind}:{variant}"] += 1
                if latency is not None:
                    latencies[kind].append(latency)
            except Failure as e:
                outcomes[f"{kind}:failed"] += 1
                failures.append(str(e))
    elapsed = time.monotonic() - t0
    t_idle = time.monotonic()
    after = server.settle(server.wait_idle(args.idle_timeout))
    idle_s = time.monotonic() - t_idle
    leaked = int(after["loom_kv_pages_total"] - after["loom_kv_pages_free"] - after["loom_kv_pages_cached"] +
                 after.get("loom_kv_pages_locked", 0))
    if leaked != 0:
        failures.append(f"{leaked} KV pages leaked at idle (total {int(after['loom_kv_pages_total'])}, free "
                        f"{int(after['loom_kv_pages_free'])}, cached {int(after['loom_kv_pages_cached'])}, locked "
                        f"{int(after.get('loom_kv_pages_locked', 0))})")
    server_5xx = int(after["http_5xx"] - before["http_5xx"])
    if server_5xx:
        failures.append(f"the server answered {server_5xx} requests with a 5xx (its /metrics)")
    answered = [x for k in ANSWERED for x in latencies[k]]
    return {
        "round": r + 1,
        "requests": count,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(count / elapsed, 1) if elapsed > 0 else None,
        "kinds": dict(sorted(collections.Counter(kinds).items())),
        "outcomes": dict(sorted(outcomes.items())),
        "variants": dict(sorted(variants.items())),
        "failures": len(failures),
        "failure_examples": failures[:10],
        "latency_s": {k: round(x, 4) if x is not None else None for k, x in percentiles(answered).items()},
        "latency_by_kind_s": {k: {q: round(x, 4) for q, x in percentiles(v).items()} for k, v in sorted(latencies.items())},
        "settle_s": round(idle_s, 2),  # until idle and the heap released
        "engine": {
            "submitted": int(after["loom_requests_submitted_total"] - before["loom_requests_submitted_total"]),
            "aborted": int(after["finished_abort"] - before["finished_abort"]),
            "finished_stop": int(after["finished_stop"] - before["finished_stop"]),
            "finished_length": int(after["finished_length"] - before["finished_length"]),
            "generation_tokens": int(after["loom_generation_tokens_total"] - before["loom_generation_tokens_total"]),
            "http_4xx": int(after["http_4xx"] - before["http_4xx"]),
            "http_5xx": server_5xx,
        },
        "kv_pages": {"total": int(after["loom_kv_pages_total"]), "free": int(after["loom_kv_pages_free"]),
                     "cached": int(after["loom_kv_pages_cached"]), "locked": int(after.get("loom_kv_pages_locked", 0)),
                     "leaked": leaked},
        "rss_kib": server.rss_kib(),
        "_latencies": answered,
    }


def fmt_s(x):
    return "-" if x is None else f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


def print_round(rd, rounds):
    lat = rd["latency_s"]
    rss = f"{rd['rss_kib'] / 1024:.1f} MiB" if rd["rss_kib"] else "-"
    print(f"round {rd['round']}/{rounds}: {rd['requests']} requests in {rd['seconds']:.1f} s "
          f"({rd['requests_per_s']}/s), {rd['failures']} failures; latency p50 {fmt_s(lat['p50'])} "
          f"p90 {fmt_s(lat['p90'])} p99 {fmt_s(lat['p99'])}; idle + heap released after {rd['settle_s']:.1f} s, "
          f"{rd['kv_pages']['leaked']} KV pages leaked ({rd['kv_pages']['cached']} cached of "
          f"{rd['kv_pages']['total']}); engine aborted {rd['engine']['aborted']}; RSS {rss}", flush=True)
    print("  " + ", ".join(f"{k} {v}" for k, v in rd["outcomes"].items()), flush=True)
    for f in rd["failure_examples"]:
        print("  FAILED: " + f, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--num-requests", type=int, default=2000, help="requests over all rounds")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    p.add_argument("--max-tokens", type=int, default=16,
                   help="max_tokens of answered requests is 1..this; aborted and disconnected ones ask up to 4x")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rss-tolerance-pct", type=float, default=5.0,
                   help="RSS after the last round may exceed RSS after the first by at most this")
    p.add_argument("--loom", default=os.path.join(ROOT, "build", "loom"))
    p.add_argument("--model-path", default=os.path.join(ROOT, "tests/data/models/tiny-qwen3-moe-realvocab"))
    p.add_argument("--tokenizer", default=os.path.join(ROOT, "tests/data/tokenizers/qwen3"))
    p.add_argument("--serve-args", default="", help="more flags for loom serve, e.g. '--max-running-requests 32'")
    p.add_argument("--base-url", help="attach to this server instead of starting one")
    p.add_argument("--server-pid", type=int, help="with --base-url: the server's pid, for its RSS")
    p.add_argument("--oversized-body-bytes", type=int, default=5 << 20,
                   help="the body of the 'body_oversized' malformed request (loom serve refuses > 4 MiB)")
    p.add_argument("--request-timeout", type=float, default=120, help="seconds without progress before a request fails")
    p.add_argument("--idle-timeout", type=float, default=120, help="seconds for the server to become idle after a round")
    p.add_argument("--start-timeout", type=float, default=120)
    p.add_argument("--output-file", help="write the report as JSON")
    args = p.parse_args()
    if args.rounds < 1 or args.num_requests < args.rounds or args.concurrency < 1 or args.max_tokens < 1:
        p.error("need --rounds >= 1, --num-requests >= --rounds, --concurrency >= 1 and --max-tokens >= 1")

    report = {"command": [sys.executable] + sys.argv, "config": {k: v for k, v in vars(args).items()},
              "rounds": [], "passed": False, "reason": ""}
    server = None
    reason = ""
    try:
        server = Server(args)
        status, models = server.get("/v1/models")
        if status != 200:
            raise Failure(f"/v1/models answered {status}")
        ctx = argparse.Namespace(host=server.host, port=server.port, model=json.loads(models)["data"][0]["id"],
                                 malformed=malformed_cases(args.oversized_body_bytes))
        print(f"soak: {args.num_requests} requests in {args.rounds} rounds at concurrency {args.concurrency} "
              f"against http://{server.host}:{server.port} ('{ctx.model}', pid {server.pid or '?'})", flush=True)
        t0 = time.monotonic()
        first = 0
        for r in range(args.rounds):
            count = args.num_requests // args.rounds + (1 if r < args.num_requests % args.rounds else 0)
            rd = run_round(r, first, count, args, ctx, server)
            first += count
            print_round(rd, args.rounds)
            report["rounds"].append(rd)
            if rd["failures"] and not reason:
                reason = f"round {r + 1}: {rd['failure_examples'][0]}"
        report["seconds"] = round(time.monotonic() - t0, 1)
    except Failure as e:
        reason = reason or str(e)
    except KeyboardInterrupt:
        reason = reason or "interrupted"
    finally:
        if server is not None:
            try:
                code = server.stop(60)
                report["server_exit_status"] = code
                if code not in (None, 0) and not reason:
                    reason = f"loom serve exited with status {code} after SIGTERM"
            except Failure as e:
                reason = reason or str(e)

    rounds = report["rounds"]
    if rounds:
        kinds, outcomes = collections.Counter(), collections.Counter()
        for rd in rounds:
            kinds.update(rd["kinds"])
            outcomes.update(rd["outcomes"])
        lat = percentiles([x for rd in rounds for x in rd.pop("_latencies")])
        rss_first, rss_last = rounds[0]["rss_kib"], rounds[-1]["rss_kib"]
        growth = (rss_last - rss_first) / rss_first * 100 if rss_first and rss_last else None
        report["total"] = {
            "requests": sum(rd["requests"] for rd in rounds),
            "kinds": dict(sorted(kinds.items())),
            "outcomes": dict(sorted(outcomes.items())),
            "failures": sum(rd["failures"] for rd in rounds),
            "latency_s": {k: round(x, 4) if x is not None else None for k, x in lat.items()},
            "leaked_pages_last_round": rounds[-1]["kv_pages"]["leaked"],
            "leaked_pages_max": max(rd["kv_pages"]["leaked"] for rd in rounds),
            "engine_aborted": sum(rd["engine"]["aborted"] for rd in rounds),
            "rss_kib_first_round": rss_first,
            "rss_kib_last_round": rss_last,
            "rss_growth_pct": round(growth, 2) if growth is not None else None,
        }
        if len(rounds) == args.rounds and growth is not None and growth > args.rss_tolerance_pct and not reason:
            reason = (f"RSS grew {growth:.1f}% from round 1 to round {len(rounds)} ({rss_first} -> {rss_last} KiB), "
                      f"beyond {args.rss_tolerance_pct}%")
        t = report["total"]
        print(f"total: {t['requests']} requests ({', '.join(f'{k} {v}' for k, v in t['kinds'].items())}); "
              f"{t['failures']} failures; latency p50 {fmt_s(lat['p50'])} p90 {fmt_s(lat['p90'])} "
              f"p99 {fmt_s(lat['p99'])}; leaked KV pages {t['leaked_pages_max']}; engine aborted "
              f"{t['engine_aborted']}; RSS after round 1 "
              f"{rss_first / 1024 if rss_first else float('nan'):.1f} MiB, after round {len(rounds)} "
              f"{rss_last / 1024 if rss_last else float('nan'):.1f} MiB "
              f"({'-' if growth is None else f'{growth:+.2f}%'})", flush=True)
    if len(rounds) < args.rounds and not reason:
        reason = f"only {len(rounds)} of {args.rounds} rounds ran"
    if reason and server is not None and server.log_tail:
        print("soak: the last lines of loom serve's log (" + str(server.log_path) + "):", file=sys.stderr)
        for line in list(server.log_tail)[-15:]:
            print("  " + line, file=sys.stderr)
    report["passed"] = not reason
    report["reason"] = reason
    if args.output_file:
        with open(args.output_file, "w") as f:
            json.dump(report, f, indent=2)
    if reason:
        print("soak: FAILED: " + reason, flush=True)
        return 1
    if server is not None and server.log_path:
        os.unlink(server.log_path)
    print("soak: passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
