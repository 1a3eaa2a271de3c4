"""Writing cassettes when the disk says no: a read-only or full cassette folder gives one
message naming it; temporary files left by a killed run are cleaned up; the file is flushed
to disk before it replaces the old one."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys

import pytest

from tests.test_record_replay import CHAT, record

JOKE = CHAT.split("def test_two_questions")[0]


def run_recording(pytester: pytest.Pytester, prefix: list[str], preexec=None) -> subprocess.CompletedProcess[str]:
    """``pytest --llmops-record`` in a subprocess (its file system or limits changed by
    ``prefix``/``preexec``), against the lab double of this process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--llmops-record", "test_chat.py"],
        cwd=pytester.path, capture_output=True, text=True, env=env, timeout=300, preexec_fn=preexec,
    )


def check_one_message(done: subprocess.CompletedProcess[str], folder, why: str) -> None:
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 passed, 1 error" in out, out
    expected = f"CassetteWriteError: Cannot write cassette {folder}/test_joke.yaml: its folder {folder} cannot take it ({why})."
    assert expected in out, out
    assert "point the `llmops_cassette_dir` ini option at another folder" in out
    assert "Traceback" not in out and "OSError" not in out


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a mount namespace")
def test_a_read_only_cassette_folder_is_named(pytester: pytest.Pytester, lab_double, double_env):
    """The folder is made read-only by a read-only bind mount in a private mount namespace
    (``unshare -m``): permissions alone do not stop root, which this suite may run as."""
    pytester.makepyfile(test_chat=JOKE)
    folder = pytester.path / "cassettes" / "test_chat"
    folder.mkdir(parents=True)
    script = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && exec \"$@\""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"read-only bind mounts are not permitted here: {probe.stderr.decode().strip()}")
    done = run_recording(pytester, ["unshare", "-m", "sh", "-c", script, "sh"])
    check_one_message(done, folder, "it is on a read-only file system")
    assert list(folder.iterdir()) == []


def test_a_full_cassette_folder_is_named(pytester: pytest.Pytester, lab_double, double_env):
    """A full disk, simulated without filling one: the recording process may write files of
    at most 2 KB (RLIMIT_FSIZE), so the cassette's write fails as on a full disk (EFBIG;
    Python ignores SIGXFSZ). The old cassette survives."""
    pytester.makepyfile(test_chat=JOKE)
    folder = pytester.path / "cassettes" / "test_chat"
    folder.mkdir(parents=True)
    old = folder / "test_joke.yaml"
    old.write_text("interactions: []\nversion: 1\n")
    done = run_recording(pytester, [], preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)))
    check_one_message(done, folder, "the file would exceed the size this process may write (disk full or file size limit)")
    assert old.read_text() == "interactions: []\nversion: 1\n", "the previous file is unchanged"
    assert sorted(p.name for p in folder.iterdir()) == ["test_joke.yaml"], "no temporary file is left"


def test_temporary_files_of_a_killed_write_are_removed_and_the_file_is_synced_before_the_rename(
    pytester: pytest.Pytester, lab_double, double_env
):
    pytester.makepyfile(test_chat=JOKE)
    folder = pytester.path / "cassettes" / "test_chat"
    folder.mkdir(parents=True)
    leftover = folder / ".test_joke.yaml.k1ll3d.tmp"  # what a SIGKILL between write and rename leaves
    leftover.write_text("interactions:\n- request:\n")
    other = folder / ".test_other.yaml.w0rk1n.tmp"  # another cassette's, fresh: maybe being written
    old = folder / ".test_old.yaml.k1ll3d.tmp"  # another cassette's, two hours old: left by a kill

    # Observe the order of the system calls (the real ones still run).
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", os.path.basename(str(src))))
        return real_replace(src, dst)

    other.write_text("x")
    old.write_text("x")
    os.utime(old, (os.path.getmtime(old) - 7200,) * 2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        patch.setattr(os, "replace", replace)
        record(pytester).assert_outcomes(passed=1)

    assert not leftover.exists() and not old.exists()
    assert other.exists()
    written = [name for verb, name in calls if name.startswith(".test_joke.yaml.")]
    assert written and [verb for verb, name in calls if name == written[0]] == ["fsync", "replace"]
