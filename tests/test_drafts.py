"""Function drafts by retrieve-and-edit: canonical forms, the corpus, the learned drafter,
``ripple train drafts`` / ``ripple eval drafts`` end to end on small real git-like histories,
and the edit index behind the ``retrieve-edit`` replay predictor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ripple.models.suggest.api import Cursor, EditContext, LiveEdit
from ripple.models.suggest.copy_features import EditorConfig
from ripple.models.suggest.edit_index import EditIndex, RetrieveEditPredictor, _words, analogous
from ripple.models.suggest.functions import extract_functions
from ripple.models.suggest.retrieve_edit import (
    BODY_INDENT,
    EditorDrafter,
    LearnedEmbedder,
    canonical_body,
    canonical_header,
    function_tokens,
    load_function_models,
)
from ripple.server.cli import main
from ripple.training.data import CommitRecord, FileChange, write_commits
from ripple.training.drafts import function_pairs, latest_files, repository_functions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODULE = '''import json


class Store:
    def load_users(self, path):
        """Load users from a JSON file."""
        with open(path) as f:
            return json.load(f)

    def save_users(self, path, users):
        """Save users to a JSON file."""
        with open(path, "w") as f:
            json.dump(users, f)


def count(items):
    return len(items)


def load_orders(path):
    """Load orders from a JSON file."""
    with open(path) as f:
        return json.load(f)
'''


def test_canonical_form_moves_methods_to_column_zero() -> None:
    records = {r.name: r for r in extract_functions(MODULE, "store.py")}
    method = records["load_users"]
    assert canonical_header(method.header).startswith("def load_users(self, path):\n    ")
    assert canonical_body(method) == "    with open(path) as f:\n        return json.load(f)\n"
    x, y = function_tokens(method)
    assert "".join(x) == canonical_header(method.header)
    assert "".join(y) == canonical_body(method)
    # a top-level function is already canonical
    top = records["load_orders"]
    assert canonical_header(top.header) == top.header
    assert canonical_body(top) == top.body


def _history(repo: str, files: dict[str, str], later: dict[str, str | None]) -> list[CommitRecord]:
    first = CommitRecord(
        repo, "a" * 40, "0" * 40, 1, "add", tuple(FileChange(p, None, t) for p, t in files.items())
    )
    second = CommitRecord(
        repo,
        "b" * 40,
        "a" * 40,
        2,
        "change",
        tuple(FileChange(p, files.get(p), t) for p, t in later.items()),
    )
    return [first, second]


def test_repository_functions_read_the_last_version_of_each_file(tmp_path: Path) -> None:
    path = tmp_path / "pallets__flask.jsonl.xz"
    write_commits(
        path,
        _history(
            "pallets/flask",
            {"a.py": MODULE, "b.py": "def gone():\n    return 1\n"},
            {"b.py": None, "c.py": "def f(x):\n    return x + 1\n"},
        ),
    )
    assert sorted(latest_files(path)) == ["a.py", "c.py"]
    names = sorted(r.name for r in repository_functions(path))
    assert names == ["count", "f", "load_orders", "load_users", "save_users"]
    pairs, kept = function_pairs(repository_functions(path), "pallets/flask")
    assert len(pairs) == len(kept) and all(p.group == "pallets/flask" for p in pairs)
    # duplicates (same canonical header and body) are kept once
    twice, _ = function_pairs(repository_functions(path) * 2, "g")
    assert len(twice) == len(pairs)


def _commits(folder: Path) -> Path:
    folder.mkdir()
    variants = []
    for i, noun in enumerate(("users", "orders", "items", "carts", "tags", "notes")):
        variants.append(
            f'def load_{noun}(path):\n    """Load {noun} from a JSON file."""\n'
            f"    with open(path) as f:\n        return json.load(f)['{noun}']\n\n\n"
            f'def save_{noun}(path, data):\n    """Save {noun} to a JSON file."""\n'
            f"    with open(path, 'w') as f:\n        json.dump({{'{noun}': data}}, f, indent={i})\n"
        )
    for repo, chunk in (("pallets/flask", variants[:4]), ("psf/requests", variants[4:5]),
                        ("pallets/click", variants[5:]), ("PyCQA/flake8", variants[:3]),
                        ("marshmallow-code/marshmallow", variants[3:])):  # fmt: skip
        files = {f"m{i}.py": "import json\n\n\n" + text for i, text in enumerate(chunk)}
        write_commits(folder / (repo.replace("/", "__") + ".jsonl.xz"), _history(repo, files, {}))
    return folder


def test_train_and_eval_drafts_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _commits(tmp_path / "commits")
    out = tmp_path / "run"
    code = main(
        ["train", "drafts", "--data", str(data), "--out", str(out), "--retriever-steps", "3",
         "--editor-steps", "3", "--eval-every", "2", "--batch-size", "4", "--vocab-size", "300",
         "--quiet"]
    )  # fmt: skip
    assert code == 0
    models = out / "models"
    manifest = json.loads((models / "retriever" / "manifest.json").read_text())
    assert manifest["kind"] == "vmf-retriever"
    assert manifest["metadata"]["train_repos"] == ["pallets/flask"]  # never flake8
    embedder, drafter = load_function_models(models)
    assert isinstance(embedder, LearnedEmbedder) and isinstance(drafter, EditorDrafter)
    vectors = embedder.embed(["def f(x):\n    return x\n", "def load_users(path):\n"])
    assert vectors.shape == (2, embedder.retriever.dim)
    assert embedder.embed([]).shape == (0, embedder.retriever.dim)
    records = {r.name: r for r in extract_functions(MODULE, "store.py")}
    body = drafter.draft("    def load_orders(self, path):\n", records["load_users"])
    if body is not None:  # an untrained editor may write nothing but blanks
        assert all(not line.strip() or line.startswith("        ") for line in body.splitlines())
    result_file = tmp_path / "drafts.json"
    code = main(
        ["eval", "drafts", "--commits", str(data / "PyCQA__flake8.jsonl.xz"), "--models",
         str(models), "--json", str(result_file), "--quiet"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(result_file.read_text())
    assert result["examples"] == 6
    assert list(result["systems"]) == ["retrieve-edit", "retriever", "lexical-edit", "retriever-lexical"]
    for name in result["systems"]:
        row = result["systems"][name]
        assert 0 <= row["bleu"] <= 100 and 0 <= row["exact"] <= 1
    # load_X's nearest neighbour is another load_Y: most of the body is shared
    assert result["systems"]["retriever-lexical"]["bleu"] > 50
    assert main(["eval", "drafts", "--commits", str(tmp_path / "none.jsonl.xz")]) == 2
    # --resume continues the retriever from its last checkpoint (step 3) to the new budget
    code = main(
        ["train", "drafts", "--data", str(data), "--out", str(out), "--retriever-steps", "5",
         "--only", "retriever", "--eval-every", "2", "--batch-size", "4", "--vocab-size", "300",
         "--force", "--resume"]
    )  # fmt: skip
    assert code == 0
    assert "resumed at step 3" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["retriever"]["steps"] == 5


def test_missing_draft_models_are_a_model_error(tmp_path: Path) -> None:
    from ripple.models.runtime import ModelError

    with pytest.raises(ModelError):
        load_function_models(tmp_path)


def test_the_drafter_reindents_for_the_new_function() -> None:
    # canonical bodies are indented by BODY_INDENT; a method's docstring sets the target
    from ripple.models.suggest.functions import reindent

    text = f"{BODY_INDENT}x = 1\n{BODY_INDENT}return x\n"
    assert reindent(text, BODY_INDENT, "        ") == "        x = 1\n        return x\n"


# -- the edit index ------------------------------------------------------------------------


def _ctx(lines: list[str], edits: list[LiveEdit], cursor_line: int = 0) -> EditContext:
    return EditContext(
        files={"a.py": tuple(lines)},
        base={"a.py": tuple(lines)},
        edits=tuple(edits),
        cursor=Cursor("a.py", cursor_line, 0),
    )


def test_edit_index_keeps_edits_that_remove_something() -> None:
    config = EditorConfig()
    rename = LiveEdit("a.py", 0, 1, ("x = fetch(url)\n",), ("x = fetch(url, timeout=5)\n",))
    insert = LiveEdit("a.py", 3, 3, (), ("print(1)\n",))
    index = EditIndex([rename, insert], config)
    assert len(index) == 1  # the pure insertion has no before-side
    hit = index.nearest(_words("y = fetch(other)\n"))
    assert hit is not None and hit[1].edit == rename
    assert index.nearest(_words("z = 3\n")) is None  # no name of the edit's before-side
    removal = LiveEdit("a.py", 0, 1, ("old_name(a)\n",), ("new_name(a)\n",))
    item = EditIndex([removal], config).items[0]
    assert item.anchors == {"old_name"}  # what it removed, not every word


def test_analogous_changes_only_remove_and_add_what_the_edit_did() -> None:
    config = EditorConfig()
    edit = LiveEdit("a.py", 0, 1, ("old_name(a)\n",), ("new_name(a)\n",))
    item = EditIndex([edit], config).items[0]
    assert analogous(["old_name(b)\n"], ["new_name(b)\n"], item)
    assert not analogous(["old_name(b)\n"], ["other(b)\n"], item)
    assert not analogous(["old_name(b)\n"], ["old_name(b)\n"], item)


def test_retrieve_edit_predictor_proposes_at_lines_like_the_edited_one() -> None:
    from ripple.models.suggest.edit_index import _make

    predictor = _make()
    assert isinstance(predictor, RetrieveEditPredictor)
    lines = [
        "def main():\n",
        "    a = fetch(url_a, timeout=5)\n",
        "    b = fetch(url_b)\n",
        "    c = compute(a, b)\n",
        "    return c\n",
    ]
    edit = LiveEdit(
        "a.py", 1, 2, ("    a = fetch(url_a)\n",), ("    a = fetch(url_a, timeout=5)\n",)
    )
    ctx = _ctx(lines, [edit], cursor_line=1)
    index = EditIndex(ctx.edits, predictor.editor.editor)
    candidates = predictor.candidates(ctx, index)
    assert candidates and candidates[0][2] == 2  # the other fetch call
    for s in predictor.suggest(ctx):
        assert "a.py:2" in s.explanation
        assert s.path == "a.py" and 0 <= s.start_line <= s.end_line <= len(lines)
    assert predictor.suggest(_ctx(lines, [])) == []
