"""The resident agent (issue 12): started on demand, output identical to in-process,
idle expiry, stop, stale sockets, other builds, other users, concurrent clients, a kill
in the middle of a write, caches that follow forgets and other processes' writes, and
a passphrase typed once per idle period.

Every test here opts in to the agent (conftest turns it off for all others) and gets
its own runtime folder, so its agent is its own; the fixture stops it at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pexpect
import pytest

from memos_cli.agent import client as agent_client, protocol as agent_protocol
from memos_cli.agent.server import Agent
from memos_cli.core.memory import Memory, new_id
from memos_cli.core.paths import resolve_paths

MEMOS = [sys.executable, "-m", "memos_cli"]
NOW = "2026-11-25T10:00:00Z"


class Agents:
    """The test's agent, seen from outside: its socket, status and process."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    @property
    def socket(self) -> Path:
        return agent_protocol.socket_path(resolve_paths())

    def status(self) -> dict | None:
        return agent_client.control(self.socket, "status")

    def pid(self) -> int:
        status = self.status()
        assert status is not None, "no agent is running"
        return int(status["pid"])

    def wait_gone(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.status() is not None:
            assert time.monotonic() < deadline, "the agent is still running"
            time.sleep(0.05)


@pytest.fixture
def agent(monkeypatch, home):
    # A short folder: a Unix socket's path may not exceed ~100 bytes.
    run_dir = Path(tempfile.mkdtemp(prefix="ma", dir="/tmp"))
    monkeypatch.delenv("MEMOS_NO_AGENT")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run_dir))
    agents = Agents(run_dir)
    yield agents
    status = agents.status()
    agent_client.stop(agents.socket)
    if status is not None:
        _kill(int(status["pid"]))
    shutil.rmtree(run_dir, ignore_errors=True)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _export_file(path: Path, texts: list[str]) -> Path:
    """An export file (JSON lines) holding ``texts``."""
    memories = [Memory(id=new_id(), text=text, created_at=NOW, updated_at=NOW).to_dict()
                for text in texts]
    path.write_text("".join(json.dumps(m) + "\n" for m in memories))
    return path


def _texts(result) -> list[str]:
    return sorted(m["text"] for m in json.loads(result.out))


def test_started_on_demand_private_and_answers_as_in_process(agent, cli, cli_proc):
    assert agent.status() is None
    first = cli_proc("remember", "My sister Ana lives in Lisbon")
    assert first.code == 0, first.err
    status = agent.status()
    assert status is not None and status["served"] == 1 and status["refused"] == 0
    assert stat.S_IMODE(os.stat(agent.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(agent.socket.parent).st_mode) == 0o700

    assert cli_proc("remember", "-", input="The wifi password at home is 4417\n").code == 0
    memory_id = json.loads(cli_proc("list", "--json").out)[0]["id"]
    exports = tempfile.mktemp(suffix=".json")  # same path for both: the message names it
    for args, stdin in [
        (("recall", "where does my sister live"), None),
        (("recall", "wifi password", "--limit", "1"), None),
        (("recall", "quantum chromodynamics lecture notes"), None),  # nothing: exit 3
        (("list",), None), (("list", "--json"), None), (("list", "-n", "1"), None),
        (("show", memory_id[:6]), None), (("show", "ffffffff"), None),
        (("export", "-"), None), (("audit",), None), (("stats",), None),
        (("stats", "--json"), None),
        (("update", "ffffffff", "new text"), None),
        (("import", exports), None),  # no such file
        (("import", "-"), "{not json"),
        (("recall", "--at", "not a date", "x"), None),
        (("remember",), ""),  # nothing to remember
    ]:
        through_agent = cli_proc(*args, input=stdin)
        in_process = cli(*args, input=stdin)
        assert (through_agent.code, through_agent.out, through_agent.err) == \
            (in_process.code, in_process.out, in_process.err), args
    assert agent.status()["served"] >= 17


def test_recall_expand_through_the_agent_uses_the_clients_model(agent, cli_proc, server):
    """The agent runs the command with the client's environment: the model it names."""
    assert cli_proc("remember", "--lines", input="The spare bike key is in the blue jar\n"
                    "I left my reading glasses at the office\n").code == 0
    server.extractions = ['{"lines": ["bike key in a jar"]}']
    result = cli_proc("recall", "where did I put it", "--floor", "0", "--expand", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)[0]["text"] == "The spare bike key is in the blue jar"
    assert len(server.requests) == 1 and agent.status()["served"] == 2


def test_terminal_output_is_the_same_through_the_agent(agent, cli_proc):
    assert cli_proc("remember", "Grace recommended the blue bike on Monday").code == 0

    def on_terminal(*args: str) -> str:
        child = pexpect.spawn(MEMOS[0], [*MEMOS[1:], *args], env=dict(os.environ),
                              dimensions=(40, 100), encoding="utf-8", timeout=60)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        return child.before

    table = on_terminal("list")
    assert "Grace recommended" in table and "─" in table  # a rich table, not TSV
    assert on_terminal("--no-agent", "list") == table


def test_a_prompt_is_answered_and_ctrl_c_stops_the_command(agent, cli_proc):
    for text in ("The spare key is under the blue pot", "The bike lock code is 0451"):
        assert cli_proc("remember", text).code == 0
    spare = next(m["id"] for m in json.loads(cli_proc("list", "--json").out) if "spare" in m["text"])

    def forget_on_terminal(answer: str | None) -> tuple[int, str]:
        child = pexpect.spawn(MEMOS[0], [*MEMOS[1:], "forget", spare], env=dict(os.environ),
                              encoding="utf-8", timeout=60, dimensions=(40, 120))
        child.expect(r"for good\?")
        child.sendintr() if answer is None else child.sendline(answer)
        child.expect(pexpect.EOF)
        child.close()
        return child.exitstatus, child.before

    code, shown = forget_on_terminal(None)  # Ctrl-C at the confirmation
    assert code == 130 and "interrupted" in shown
    assert len(json.loads(cli_proc("list", "--json").out)) == 2
    assert forget_on_terminal("y")[0] == 0
    assert _texts(cli_proc("list", "--json")) == ["The bike lock code is 0451"]
    assert agent.status()["served"] >= 6


def test_idle_agent_exits_and_leaves_no_socket(agent, cli_proc):
    assert cli_proc("remember", "x marks the spot", env={"MEMOS_AGENT_TTL": "1s"}).code == 0
    assert agent.status()["ttl_s"] == 1.0
    agent.wait_gone()
    assert not agent.socket.exists()


def test_stop_and_status(agent, cli_proc):
    assert cli_proc("agent", "status").code == 3
    started = cli_proc("agent", "start")
    assert started.code == 0 and "running" in started.err
    shown = cli_proc("agent", "status", "--json")
    assert shown.code == 0 and json.loads(shown.out)["pid"] == agent.pid()
    stopped = cli_proc("agent", "stop")
    assert stopped.code == 0 and "stopped" in stopped.err
    assert agent.status() is None and not agent.socket.exists()
    assert cli_proc("agent", "stop").err.strip() == "memos agent: none was running"


def test_ttl_zero_means_no_agent(agent, cli_proc):
    assert cli_proc("remember", "no agent for me", env={"MEMOS_AGENT_TTL": "0"}).code == 0
    assert agent.status() is None
    refused = cli_proc("agent", "start", env={"MEMOS_AGENT_TTL": "0"})
    assert refused.code == 2 and "agent.ttl is 0" in refused.err


def test_a_killed_agents_socket_is_cleaned_up(agent, cli_proc):
    assert cli_proc("remember", "first").code == 0
    old = agent.pid()
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while agent.status() is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert agent.socket.exists()  # left behind: nobody listens on it
    again = cli_proc("recall", "first")
    assert again.code == 0 and "first" in again.out
    assert agent.pid() != old


def test_an_agent_of_another_build_is_replaced_never_used(agent, cli_proc, monkeypatch, capfd):
    assert cli_proc("remember", "the build test").code == 0
    old = agent.status()
    monkeypatch.setattr(agent_protocol, "build", lambda: "0.0.0 another-python")
    # The old agent quits; the one started for us is of the real build, so it quits too,
    # and the command runs in this process.
    assert agent_client.run(["list"]) is None
    assert capfd.readouterr().out == ""
    assert agent.status() is None
    with pytest.raises(ProcessLookupError):
        for _ in range(200):
            os.kill(int(old["pid"]), 0)
            time.sleep(0.05)


def test_another_uid_is_refused_and_counted(tmp_path):
    run_dir = Path(tempfile.mkdtemp(prefix="ma", dir="/tmp"))
    try:
        for uid, answered in ((os.getuid() + 1, False), (os.getuid(), True)):
            server = Agent(run_dir / f"agent-{uid}.sock", uid=uid)
            thread = threading.Thread(target=server.serve, daemon=True)
            thread.start()
            while not server.path.exists():
                time.sleep(0.01)
            assert (agent_client.control(server.path, "status") is not None) is answered
            assert server.refused == (0 if answered else 1)
            server.stop()
            thread.join(10)
            assert not server.path.exists()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def test_runtime_folder_open_to_others_is_refused(tmp_path):
    (tmp_path / "memos").mkdir(mode=0o755)
    os.chmod(tmp_path / "memos", 0o755)
    with pytest.raises(agent_protocol.AgentUnavailable, match="open to other users"):
        agent_protocol.runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)})
    shutil.rmtree(tmp_path / "memos")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "memos").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(agent_protocol.AgentUnavailable, match="not a folder"):
        agent_protocol.runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)})


def test_concurrent_clients_with_and_without_agent_lose_nothing(agent, cli_proc):
    assert cli_proc("agent", "start").code == 0
    texts = [f"Parcel number {n} arrives on dock {n + 10}" for n in range(8)]
    procs = [subprocess.Popen([*MEMOS, *(["--no-agent"] if n % 3 == 0 else []), "remember", text],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n, text in enumerate(texts)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    listed = cli_proc("--no-agent", "list", "--json")
    assert _texts(listed) == sorted(texts)
    assert _texts(cli_proc("list", "--json")) == sorted(texts)


def test_agent_killed_mid_write_leaves_the_journals_promise(agent, cli_proc, tmp_path):
    assert cli_proc("remember", "kept from before").code == 0
    source = _export_file(tmp_path / "many.jsonl", [f"imported note {n}" for n in range(50)])
    killed = cli_proc("import", str(source), env={"MEMOS_TEST_FAILPOINT": "add:rows-stored"})
    assert killed.code == 1 and "agent stopped before the command finished" in killed.err
    after = cli_proc("--no-agent", "list", "--json")
    assert "rolled back" in after.err
    assert _texts(after) == ["kept from before"]
    assert _texts(cli_proc("list", "--json")) == ["kept from before"]  # a new agent


def test_forget_and_other_processes_writes_reach_the_agents_caches(agent, cli_proc):
    for text in ("The boiler code is 5512", "The gate code is 7781"):
        assert cli_proc("remember", text).code == 0
    assert "5512" in cli_proc("recall", "boiler code").out  # now cached in the agent
    boiler = next(m["id"] for m in json.loads(cli_proc("list", "--json").out)
                  if "boiler" in m["text"])
    assert cli_proc("forget", boiler, "--yes").code == 0
    assert "5512" not in cli_proc("recall", "boiler code").out
    assert cli_proc("show", boiler).code == 3
    assert cli_proc("--no-agent", "remember", "The shed code is 3390").code == 0
    assert "3390" in cli_proc("recall", "shed code").out
    shed = next(m["id"] for m in json.loads(cli_proc("list", "--json").out) if "shed" in m["text"])
    assert cli_proc("--no-agent", "forget", shed, "--yes").code == 0
    assert _texts(cli_proc("list", "--json")) == ["The gate code is 7781"]


def test_passphrase_is_typed_once_per_idle_period(agent, cli_proc, monkeypatch):
    created = cli_proc("remember", "The locker combination is 2-19-33",
                       env={"MEMOS_PASSPHRASE": "correct horse"})
    assert created.code == 0, created.err
    assert cli_proc("agent", "stop").code == 0

    def recall_on_terminal(expect_prompt: bool) -> str:
        env = {k: v for k, v in os.environ.items() if k != "MEMOS_PASSPHRASE"}
        child = pexpect.spawn(MEMOS[0], [*MEMOS[1:], "recall", "locker combination"], env=env,
                              encoding="utf-8", timeout=60, dimensions=(40, 120))
        if expect_prompt:
            child.expect("Passphrase")
            child.sendline("correct horse")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before
        return child.before

    assert "2-19-33" in recall_on_terminal(expect_prompt=True)
    again = recall_on_terminal(expect_prompt=False)
    assert "2-19-33" in again and "Passphrase" not in again
    # Without a terminal and without the agent, the same command cannot open the key.
    assert cli_proc("--no-agent", "recall", "locker combination").code != 0


def test_a_closed_pipe_ends_quietly(agent, cli_proc, tmp_path):
    # More than a pipe holds (64 KiB), in few memories: embedding stops at 256 tokens.
    source = _export_file(tmp_path / "long.jsonl",
                          [f"Long note {n}: " + "lorem ipsum " * 500 for n in range(16)])
    assert cli_proc("import", str(source)).code == 0
    shell = subprocess.run(["bash", "-c", f"{sys.executable} -m memos_cli list | head -1; "
                                          "echo status=${PIPESTATUS[0]}"],
                           capture_output=True, text=True, timeout=120)
    assert shell.stdout.count("\n") == 2 and "status=0" in shell.stdout
    assert shell.stderr == ""


def test_the_agent_writes_no_plaintext_and_keeps_no_log(agent, cli_proc, home):
    canary = "Zanzibar-canary-7731 is the safe word"
    secrets = {"MEMOS_PASSPHRASE": "pass-9931", "MEMOS_LLM_API_KEY": "sk-test-4242"}
    assert cli_proc("remember", canary, env=secrets).code == 0  # starts the agent
    assert canary in cli_proc("recall", "the safe word").out
    assert cli_proc("list").code == 0
    pid = agent.pid()
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == os.devnull
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"pass-9931" not in environ and b"sk-test-4242" not in environ
    assert cli_proc("agent", "stop").code == 0
    runtime = sorted(p.name for p in agent.run_dir.rglob("*") if p.is_file() or p.is_socket())
    assert all(name.endswith(".lock") for name in runtime), runtime
    for path in [*home.rglob("*"), *agent.run_dir.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert b"Zanzibar" not in data and b"canary-7731" not in data, path


def test_the_client_imports_no_heavy_module(agent, cli_proc):
    assert cli_proc("remember", "light client").code == 0
    # Reported at exit: the client's sys.exit runs atexit; an in-process command's
    # os._exit (cli.app.run: no interpreter teardown) does not, so it reports first.
    probe = ("import atexit, os, sys\n"
             "heavy = ('chromadb', 'numpy', 'onnxruntime', 'typer', 'rich', 'openai')\n"
             "report = lambda: sys.stderr.write('HEAVY=' + ','.join(\n"
             "    m for m in heavy if m in sys.modules) + '\\n')\n"
             "atexit.register(report)\n"
             "real_exit = os._exit\n"
             "os._exit = lambda code: (report(), sys.stderr.flush(), real_exit(code))\n"
             "sys.argv = ['memos'] + sys.argv[1:]\n"
             "from memos_cli.__main__ import main\n"
             "main()\n")
    for args, loaded in ((["list"], ""), (["--no-agent", "list"], "chromadb,numpy")):
        run = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0 and "light client" in run.stdout
        heavy = run.stderr.strip().splitlines()[-1].removeprefix("HEAVY=")
        assert heavy.startswith(loaded) if loaded else heavy == ""
