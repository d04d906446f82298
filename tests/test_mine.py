"""``ripple mine`` on a real git repository built here with scripted commits.

Each scripted commit says what the miner must do with it: keep it with exactly these
files (path, before, after), or drop it. ``check`` compares the mined records with that
script field by field.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ripple.server.cli import main
from ripple.training.data import CommitRecord, iter_commits

BIG = "x = 1\n" * 40_000  # 240,000 bytes: over the 200,000-byte limit


@dataclass(frozen=True)
class Step:
    """One scripted commit: file writes (``None`` deletes, ``bytes`` are written raw)."""

    message: str
    writes: dict[str, str | bytes | None]
    # The files the record must hold, as (path, before, after); None = commit dropped.
    expect: list[tuple[str, str | None, str | None]] | None
    symlinks: tuple[tuple[str, str], ...] = ()
    chmod_x: tuple[str, ...] = ()


A0 = "def fetch(url):\n    return get(url)\n\n\nfetch('a')\nfetch('b')\n"
A1 = "def fetch(address):\n    return get(address)\n\n\nfetch('a')\nfetch('b')\n"
A2 = "def fetch(address, timeout):\n    return get(address)\n\n\nfetch('a', 1)\nfetch('b', 1)\n"
U0 = "from a import fetch\n\nfetch('c')\n"
U1 = "from a import fetch\n\nfetch('c', 1)\n"
M0 = "x = 1\ny = 2\nz = 3\n"
M1 = "z = 3\nx = 1\ny = 2\n"

SCRIPT: list[Step] = [
    Step("root", {"a.py": A0, "util.py": U0, "m.py": M0, "README": "hi\n"}, None),
    Step("rename an identifier", {"a.py": A1}, [("a.py", A0, A1)]),
    Step(
        "add an argument\n\nwith a body",
        {"a.py": A2, "util.py": U1},
        [("a.py", A1, A2), ("util.py", U0, U1)],
    ),
    Step("move a statement", {"m.py": M1}, [("m.py", M0, M1)]),
    Step(
        "binary next to a real change",
        {"bin.py": b"x = 1\x00\n", "m.py": M0},
        [("m.py", M1, M0)],
    ),
    Step("only a binary", {"bin.py": b"x = 2\x00\n"}, None),
    Step("not utf-8", {"latin.py": "s = 'caf\xe9'\n".encode("latin-1")}, None),
    Step("whitespace only", {"m.py": "x = 1\ny  =  2\nz = 3\n"}, None),
    Step(
        "whitespace kept beside a real change",
        {"m.py": "x = 1\ny = 2\nz = 3\n", "util.py": U0},
        [("m.py", "x = 1\ny  =  2\nz = 3\n", M0), ("util.py", U1, U0)],
    ),
    Step("git rename", {"m.py": None, "moved.py": M0}, [("m.py", M0, None), ("moved.py", None, M0)]),
    Step("not python", {"README": "changed\n"}, None),
    Step("too many files", {f"many/f{i}.py": f"v = {i}\n" for i in range(11)}, None),
    Step("ten files", {f"many/f{i}.py": f"v = {i + 1}\n" for i in range(10)},
         [(f"many/f{i}.py", f"v = {i}\n", f"v = {i + 1}\n") for i in sorted(range(10), key=str)]),
    Step("too many lines", {"long.py": "".join(f"v{i} = {i}\n" for i in range(301))}, None),
    Step("exactly 300 lines", {"long2.py": "".join(f"v{i} = {i}\n" for i in range(300))},
         [("long2.py", None, "".join(f"v{i} = {i}\n" for i in range(300)))]),
    Step("symlink", {}, None, symlinks=(("link.py", "a.py"),)),
    Step("mode only", {}, None, chmod_x=("a.py",)),
    Step("empty init", {"pkg/__init__.py": ""}, None),
    Step("too big", {"big.py": BIG}, None),
    Step("delete", {"moved.py": None}, [("moved.py", M0, None)]),
]


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env
    )
    return proc.stdout.strip()


def _env(n: int) -> dict[str, str]:
    # Fixed identities and dates make the repository reproducible; times increase.
    date = f"{1_600_000_000 + n * 100} +0000"
    return dict(
        os.environ,
        GIT_AUTHOR_NAME="A",
        GIT_AUTHOR_EMAIL="a@example.com",
        GIT_COMMITTER_NAME="A",
        GIT_COMMITTER_EMAIL="a@example.com",
        GIT_AUTHOR_DATE=date,
        GIT_COMMITTER_DATE=date,
    )


def _apply(repo: Path, step: Step, n: int) -> str:
    for path, content in step.writes.items():
        target = repo / path
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8", newline="")
    for link, dest in step.symlinks:
        (repo / link).symlink_to(dest)
    for path in step.chmod_x:
        (repo / path).chmod(0o755)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", step.message, env=_env(n))
    return _git(repo, "rev-parse", "HEAD")


@dataclass(frozen=True)
class Built:
    repo: Path
    shas: dict[str, str]  # message first line -> sha
    side: str  # the side-branch commit
    merge: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    repo = tmp_path_factory.mktemp("mined") / "proj"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "core.autocrlf", "false")
    shas: dict[str, str] = {}
    for n, step in enumerate(SCRIPT):
        shas[step.message.split("\n")[0]] = _apply(repo, step, n)
    # A side branch merged back: its commit is kept, the merge commit is not.
    n = len(SCRIPT)
    _git(repo, "checkout", "-q", "-b", "side", shas["rename an identifier"])
    side = _apply(repo, Step("side branch", {"side.py": "s = 1\n"}, None), n)
    _git(repo, "checkout", "-q", "main")
    _git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side", env=_env(n + 1))
    merge = _git(repo, "rev-parse", "HEAD")
    return Built(repo, shas, side, merge)


def _mine(repo: Path, out: Path, *extra: str) -> list[CommitRecord]:
    assert main(["mine", str(repo), "--out", str(out), "--quiet", *extra]) == 0
    return list(iter_commits(out))


def check(records: list[CommitRecord], built: Built, script: list[Step]) -> None:
    """The records are exactly the script's kept commits (plus the side commit), in order."""
    by_sha = {r.commit: r for r in records}
    assert len(by_sha) == len(records), "a commit was mined twice"
    for n, step in enumerate(script):
        sha = built.shas[step.message.split("\n")[0]]
        if step.expect is None:
            assert sha not in by_sha, f"{step.message!r} should be dropped"
            continue
        assert sha in by_sha, f"{step.message!r} should be kept"
        rec = by_sha[sha]
        assert rec.repo == "local/proj"
        assert rec.parent == built.shas[script[n - 1].message.split("\n")[0]]
        assert rec.time == 1_600_000_000 + n * 100
        assert rec.message == step.message.split("\n")[0]
        assert [(f.path, f.before, f.after) for f in rec.files] == step.expect, step.message
    assert built.merge not in by_sha
    assert built.side in by_sha
    assert by_sha[built.side].files[0].after == "s = 1\n"
    # Parents before children: every parent that was mined comes earlier.
    position = {r.commit: i for i, r in enumerate(records)}
    for r in records:
        if r.parent in position:
            assert position[r.parent] < position[r.commit]


def test_mine_keeps_and_drops_exactly(built: Built, tmp_path: Path) -> None:
    records = _mine(built.repo, tmp_path / "out.jsonl.xz")
    check(records, built, SCRIPT)
    kept = [s for s in SCRIPT if s.expect is not None]
    assert len(records) == len(kept) + 1  # + the side-branch commit


def test_mine_bare_repository_gives_the_same_records(built: Built, tmp_path: Path) -> None:
    bare = tmp_path / "proj.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(built.repo), str(bare)], check=True)
    work = _mine(built.repo, tmp_path / "work.jsonl.xz")
    records = _mine(bare, tmp_path / "bare.jsonl.xz")
    assert [r.commit for r in records] == [r.commit for r in work]
    assert [r.files for r in records] == [r.files for r in work]


def test_max_commits_keeps_the_most_recent(built: Built, tmp_path: Path) -> None:
    everything = _mine(built.repo, tmp_path / "all.jsonl.xz")
    last3 = _mine(built.repo, tmp_path / "last3.jsonl.xz", "--max-commits", "3")
    assert last3 == everything[-3:]


def test_branch_selects_history(built: Built, tmp_path: Path) -> None:
    records = _mine(built.repo, tmp_path / "side.jsonl.xz", "--branch", "side")
    assert [r.commit for r in records] == [
        built.shas["rename an identifier"],
        built.side,
    ]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("plain-dir", "not a git repository"),
        ("empty-repo", "has no commits"),
        ("missing-dir", "no such directory"),
        ("subdir", "not the top of a git repository"),
        ("bad-branch", "does not name a commit"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    setup: str, message: str, built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target"
    extra: list[str] = []
    if setup == "plain-dir":
        target.mkdir()
    elif setup == "empty-repo":
        target.mkdir()
        _git(target, "init", "-q")
    elif setup == "subdir":
        target = built.repo / "many"
    elif setup == "bad-branch":
        target = built.repo
        extra = ["--branch", "no-such-branch"]
    code = main(["mine", str(target), "--out", str(tmp_path / "o.jsonl.xz"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl.xz").exists()


def test_missing_objects_are_a_clear_error(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(built.repo), str(broken)], check=True)
    # Remove one blob that a kept commit needs: reading it must fail with one line.
    blob = _git(broken, "rev-parse", f"{built.shas['move a statement']}:m.py")
    subprocess.run(["git", "-C", str(broken), "repack", "-q", "-a", "-d"], check=True)
    for pack in (broken / "objects" / "pack").glob("*.pack"):
        # Unpack everything loose, then delete the one object.
        idx = pack.with_suffix(".idx")
        data = pack.read_bytes()
        pack.unlink()
        idx.unlink()
        subprocess.run(
            ["git", "-C", str(broken), "unpack-objects", "-q"], input=data, check=True
        )
    (broken / "objects" / blob[:2] / blob[2:]).unlink()
    code = main(["mine", str(broken), "--out", str(tmp_path / "o.jsonl.xz"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("ripple: error:")
