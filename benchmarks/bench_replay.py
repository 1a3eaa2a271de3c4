"""Replay speed of pytest-llmops (issue: replay speed).

    python benchmarks/bench_replay.py [--reps 3] [--quick]

P1  ``pytest --collect-only`` of 500 trivial tests, with the plugin against ``-p no:llmops``,
    with bytecode caches and without them (``PYTHONDONTWRITEBYTECODE=1`` as a CI image sets
    it: pytest keeps no plugin's rewritten modules, so each run rewrites and compiles every
    plugin module it imports, this one's and the others'); and the artificial worst case
    where only this plugin's caches are missing.
P2  one replayed chat completion per test (client built once per module), per-test cost
    from the 400-test and 40-test suites: the plugin against pytest-recording, and against
    an in-memory ``httpx2.MockTransport`` floor. Two layouts: the default one, one cassette
    file per test (each tool's own default path), and one vcrpy cassette shared by all tests
    (which the plugin parses once per process and pytest-recording once per test).
P3  a cassette of 2,000 interactions (chat and streamed bodies of realistic size): load
    time against a bare ``yaml.CSafeLoader`` parse, and replay of all 2,000 against 200.

Every figure is a ratio measured in this one run (medians of alternating repetitions; for
P1 the median of the ratios of runs made back to back).
pytest-recording is a benchmark-only dependency (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import WORK, alternate, count_instructions, machine, per_test, run_pytest, workdir

URI = "https://resource.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-05-01-preview"
QUESTION = "Tell me a joke about animals."


def completion(i: int, words: int = 60) -> dict[str, object]:
    text = " ".join(f"word{(i * 7 + k) % 97}" for k in range(words))
    return {
        "id": f"chatcmpl-{i:08d}", "object": "chat.completion", "created": 1732900000, "model": "gpt-4o-2024-11-20",
        "system_fingerprint": "fp_0000000000",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
            k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")}}],
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": text, "refusal": None},
                     "content_filter_results": {k: {"filtered": False, "severity": "safe"}
                                                for k in ("hate", "self_harm", "sexual", "violence")}}],
        "usage": {"prompt_tokens": 14, "completion_tokens": words, "total_tokens": 14 + words},
    }


def stream_body(i: int, words: int = 60) -> str:
    chunks = [{"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}]
    for k in range(words):
        chunks.append({"id": f"chatcmpl-{i:08d}", "object": "chat.completion.chunk", "created": 1732900000,
                       "model": "gpt-4o-2024-11-20", "choices": [
                           {"index": 0, "delta": {"content": f"word{k} "}, "finish_reason": None}]})
    chunks.append({"id": f"chatcmpl-{i:08d}", "object": "chat.completion.chunk", "created": 1732900000,
                   "model": "gpt-4o-2024-11-20", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return "".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks) + "data: [DONE]\n\n"


def interaction(question: str, body: str, stream: bool) -> dict[str, object]:
    request: dict[str, object] = {"messages": [{"role": "user", "content": question}], "model": "gpt-4o"}
    if stream:
        request["stream"] = True
    return {
        "request": {"body": json.dumps(request), "headers": {"content-type": ["application/json"]},
                    "method": "POST", "uri": URI},
        "response": {"body": {"string": body},
                     "headers": {"content-type": ["text/event-stream" if stream else "application/json"]},
                     "status": {"code": 200, "message": "OK"}},
    }


def write_cassette(path: Path, interactions: list[dict[str, object]]) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump({"interactions": interactions, "version": 1}, Dumper=yaml.CSafeDumper))


# -- P1 -----------------------------------------------------------------------------------
def p1(reps: int) -> dict[str, dict[str, float]]:
    """Per bytecode condition: median times of the plugin and the baseline, and the median
    of the ratios of runs made back to back (in turn first), which cancels the slow and fast
    phases of a shared machine better than a ratio of medians."""
    folder = workdir("p1")
    (folder / "test_trivial.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('i', range(500))\ndef test_t(i):\n    pass\n"
    )
    plugin = ["--collect-only", "-p", "no:recording"]
    baseline = ["--collect-only", "-p", "no:llmops", "-p", "no:recording"]

    def cached(args: list[str]) -> float:
        run_pytest(folder, args)  # rewrites the caches the last no-cache run removed
        return run_pytest(folder, args)

    def only_ours(args: list[str]) -> float:
        run_pytest(folder, args)  # the other plugins' rewritten modules cached again
        return run_pytest(folder, args, bytecode="ours")

    conditions: dict[str, Callable[[list[str]], float]] = {  # bytecode caches: all, none, all but ours
        "cached": cached,
        "nocache": lambda args: run_pytest(folder, args, bytecode="none"),
        "ours": only_ours,
    }
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in conditions}
    for rep in range(reps):
        for name, run in conditions.items():
            if rep % 2 == 0:
                with_plugin, without = run(plugin), run(baseline)
            else:
                without, with_plugin = run(baseline), run(plugin)
            samples[name][0].append(with_plugin)
            samples[name][1].append(without)
    return {
        name: {
            "plugin_s": statistics.median(with_plugin), "baseline_s": statistics.median(without),
            "ratio": statistics.median(p / b for p, b in zip(with_plugin, without, strict=True)),
        }
        for name, (with_plugin, without) in samples.items()
    }


def p1_instructions() -> dict[str, float]:
    """P1's ratios in instructions (valgrind): one run per arm and condition, each preceded
    by the run that leaves the caches as the condition wants them."""
    folder = WORK / "p1"
    plugin = ["--collect-only", "-p", "no:recording"]
    baseline = ["--collect-only", "-p", "no:llmops", "-p", "no:recording"]
    ratios = {}
    for name, bytecode in (("cached", "cached"), ("nocache", "none"), ("ours", "ours")):
        counts = []
        for args in (plugin, baseline):
            run_pytest(folder, args)  # every rewritten module cached (the other conditions drop some)
            counts.append(count_instructions(folder, args, bytecode=bytecode))
        ratios[name] = counts[0] / counts[1]
    return ratios


# -- P2 -----------------------------------------------------------------------------------
CLIENT = """
import openai, pytest

@pytest.fixture(scope="module")
def client():
    return openai.AzureOpenAI(azure_endpoint="https://resource.openai.azure.com", api_key="k",
                              api_version="2024-05-01-preview"{extra})
"""
CALL = """
def _ask(client):
    reply = client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": {q!r}}}])
    assert reply.choices[0].message.content
"""


def suite(folder: Path, kind: str, n: int, layout: str = "shared") -> None:
    """A suite of ``n`` tests replaying one chat completion each; ``layout`` is ``shared``
    (one cassette for all) or ``per-test`` (one file per test, at each tool's default path)."""
    header = textwrap.dedent(CLIENT).format(extra="")
    if kind == "floor":
        header = textwrap.dedent("""
            import json, httpx2, openai, pytest
            BODY = json.dumps({body}).encode()

            def handler(request):
                json.loads(request.content)  # what a matcher would at least do
                return httpx2.Response(200, content=BODY, headers={{"content-type": "application/json"}})

            @pytest.fixture(scope="module")
            def client():
                return openai.AzureOpenAI(azure_endpoint="https://resource.openai.azure.com", api_key="k",
                                          api_version="2024-05-01-preview",
                                          http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
        """).format(body=repr(completion(0)))
    shared = layout == "shared"
    marker = {
        "plugin": '@pytest.mark.llmops_cassette(name="chat")\n' if shared else "@pytest.mark.llmops_cassette\n",
        "recording": ('@pytest.mark.default_cassette("chat.yaml")\n' if shared else "") + "@pytest.mark.vcr\n",
        "floor": "",
    }[kind]
    body = header + textwrap.dedent(CALL).format(q=QUESTION)
    body += f"\n{marker}@pytest.mark.parametrize('i', range({n}))\ndef test_chat(client, i):\n    _ask(client)\n"
    if kind == "recording" and shared:
        body += "\n@pytest.fixture(scope='module')\ndef vcr_cassette_dir():\n    return 'cassettes'\n"
    (folder / "test_replay.py").write_text(body)
    one = [interaction(QUESTION, json.dumps(completion(0)), False)]
    if shared or kind == "floor":
        write_cassette(folder / "cassettes" / "chat.yaml", one)
        return
    for i in range(n):  # plugin: cassettes/<module>/<test>-<id>.yaml; pytest-recording: <test>[<id>].yaml
        name = f"test_chat-{i}.yaml" if kind == "plugin" else f"test_chat[{i}].yaml"
        write_cassette(folder / "cassettes" / "test_replay" / name, one)


def p2(reps: int) -> dict[str, float]:
    args = {
        "plugin": ["-p", "no:recording"],
        "recording": ["-p", "no:llmops", "--record-mode=none"],
        "floor": ["-p", "no:llmops", "-p", "no:recording"],
    }
    runs = {}
    variants = [(kind, layout) for kind in args for layout in ("shared", "per-test") if kind != "floor" or
                layout == "shared"]
    for kind, layout in variants:
        for n in (40, 400):
            folder = workdir(f"p2-{kind}-{layout}-{n}")
            suite(folder, kind, n, layout)
            runs[f"{kind}-{layout}-{n}"] = (lambda f=folder, a=args[kind]: run_pytest(f, a))
    times = alternate(runs, reps)
    cost = {
        f"{kind}-{layout}": per_test(times[f"{kind}-{layout}-40"], times[f"{kind}-{layout}-400"], 40, 400) * 1000
        for kind, layout in variants
    }
    return {
        "plugin_ms": cost["plugin-shared"], "recording_ms": cost["recording-shared"],
        "floor_ms": cost["floor-shared"],
        "vs_recording": cost["plugin-shared"] / cost["recording-shared"],
        "vs_floor": cost["plugin-shared"] / cost["floor-shared"],
        "plugin_per_test_ms": cost["plugin-per-test"], "recording_per_test_ms": cost["recording-per-test"],
        "per_test_vs_recording": cost["plugin-per-test"] / cost["recording-per-test"],
        "per_test_vs_floor": cost["plugin-per-test"] / cost["floor-shared"],
    }


# -- P3 -----------------------------------------------------------------------------------
REPLAY_ALL = """
import json, time, openai, pytest, yaml

@pytest.mark.llmops_cassette(name="big")
def test_replay_all():
    client = openai.AzureOpenAI(azure_endpoint="https://resource.openai.azure.com", api_key="k",
                                api_version="2024-05-01-preview")
    questions = json.loads(open("questions.json").read())
    started = time.perf_counter()
    for question, stream in questions:
        extra = {"stream": True} if stream else {}
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": question}],
                                               **extra)
        if stream:
            assert list(reply)
        else:
            assert reply.choices
    print(f"REPLAY_S={time.perf_counter() - started:.6f}")
"""


def big_cassette(folder: Path, n: int) -> Path:
    interactions, questions = [], []
    for i in range(n):
        stream = i % 4 == 3
        question = f"Question {i}: what does the model say about topic {i % 37}?"
        body = stream_body(i) if stream else json.dumps(completion(i))
        interactions.append(interaction(question, body, stream))
        questions.append((question, stream))
    path = folder / "cassettes" / "big.yaml"
    write_cassette(path, interactions)
    (folder / "questions.json").write_text(json.dumps(questions))
    (folder / "test_big.py").write_text(textwrap.dedent(REPLAY_ALL))
    return path


def p3(reps: int) -> dict[str, float]:
    import yaml

    from pytest_llmops.cassettes import storage

    big = workdir("p3-2000")
    small = workdir("p3-200")
    path = big_cassette(big, 2000)
    big_cassette(small, 200)
    text = path.read_text()
    load, bare = [], []
    for _ in range(max(reps, 3)):
        started = time.perf_counter()
        yaml.load(text, Loader=yaml.CSafeLoader)
        bare.append(time.perf_counter() - started)
        storage._loaded.clear()  # measure a first load, not the in-process cache
        started = time.perf_counter()
        storage.load(path)
        load.append(time.perf_counter() - started)

    def replay(folder: Path) -> float:
        import os
        import subprocess

        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p",
                              "no:recording"], cwd=folder, capture_output=True, text=True, env=env)
        line = next((x for x in out.stdout.splitlines() if "REPLAY_S=" in x), None)
        if line is None:
            raise SystemExit(out.stdout[-3000:])
        return float(line.split("REPLAY_S=")[1].split()[0])

    times = alternate({"2000": lambda: replay(big), "200": lambda: replay(small)}, reps)
    return {
        "load_s": statistics.median(load), "bare_parse_s": statistics.median(bare),
        "load_ratio": statistics.median(load) / statistics.median(bare),
        "replay_2000_s": times["2000"], "replay_200_s": times["200"], "replay_ratio": times["2000"] / times["200"],
        "size_mb": len(text) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions (median taken), >= 3")
    parser.add_argument("--only", choices=["p1", "p2", "p3"], action="append")
    parser.add_argument("--instructions", action="store_true",
                        help="P1 also in instructions, counted by valgrind (installed separately)")
    args = parser.parse_args()
    reps = max(3, args.reps)
    only = set(args.only or ["p1", "p2", "p3"])
    print(f"machine: {machine()}")
    rows = []
    if "p1" in only:
        r1 = p1(reps)
        counted = p1_instructions() if args.instructions else {}
        for name, label in (
            ("cached", "P1 collect 500 tests: plugin / -p no:llmops"),
            ("nocache", "P1 the same without bytecode caches"),
            ("ours", "P1 worst case: only pytest-llmops uncached"),
        ):
            rows.append((label, f"{r1[name]['ratio']:.3f}x", "-" if name == "ours" else "<= 1.05x",
                         f"{r1[name]['plugin_s']:.3f} s vs {r1[name]['baseline_s']:.3f} s"))
            instructions = counted.get(name)
            if instructions:
                rows.append(("  the same in instructions (valgrind)", f"{instructions:.3f}x",
                             "-" if name == "ours" else "<= 1.05x", "deterministic: no machine noise"))
    if "p2" in only:
        r = p2(reps)
        rows.append(("P2 one file per test (default): plugin / pytest-recording", f"{r['per_test_vs_recording']:.2f}x",
                     "<= 1.0x", f"{r['plugin_per_test_ms']:.2f} ms vs {r['recording_per_test_ms']:.2f} ms"))
        rows.append(("P2 one file per test (default): plugin / MockTransport floor", f"{r['per_test_vs_floor']:.2f}x",
                     "<= 2x", f"{r['plugin_per_test_ms']:.2f} ms vs {r['floor_ms']:.2f} ms"))
        rows.append(("P2 one shared file: plugin / pytest-recording", f"{r['vs_recording']:.2f}x", "<= 1.0x",
                     f"{r['plugin_ms']:.2f} ms vs {r['recording_ms']:.2f} ms"))
        rows.append(("P2 one shared file: plugin / MockTransport floor", f"{r['vs_floor']:.2f}x", "<= 2x",
                     f"{r['plugin_ms']:.2f} ms vs {r['floor_ms']:.2f} ms"))
    if "p3" in only:
        r = p3(reps)
        rows.append(("P3 load 2,000 interactions / bare CSafeLoader parse", f"{r['load_ratio']:.2f}x", "<= 1.5x",
                     f"{r['load_s']:.3f} s vs {r['bare_parse_s']:.3f} s ({r['size_mb']:.1f} MB)"))
        rows.append(("P3 replay 2,000 / replay 200", f"{r['replay_ratio']:.2f}x", "<= 12x",
                     f"{r['replay_2000_s']:.3f} s vs {r['replay_200_s']:.3f} s"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'ratio':>8}  {'target':>8}  detail")
    for name, ratio, target, detail in rows:
        print(f"{name:<{width}}  {ratio:>8}  {target:>8}  {detail}")


if __name__ == "__main__":
    main()
