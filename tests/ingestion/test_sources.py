"""Sources: folders, git repositories and uploads list their documents in batches, re-open them by
path, and report what they refuse (escaping symlinks, unsafe archive entries) with a reason."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.core.db import DocumentStatus, SourceKind
from corral.core.errors import IngestError, InvalidInputError, PermissionDeniedError
from corral.ingestion.sources import (
    ArchiveLimits,
    ArchiveSource,
    FolderSource,
    GitSource,
    SourceDocument,
    SourceProblem,
    open_source,
    parse_git_uri,
)
from corral.ingestion.sources.base import DocumentTooLargeError


def _all(source: object, batch_size: int = 100) -> list[SourceDocument | SourceProblem]:
    return [item for batch in source.iter_batches(batch_size) for item in batch]  # type: ignore[attr-defined]


def _docs(items: list[SourceDocument | SourceProblem]) -> dict[str, SourceDocument]:
    return {i.path: i for i in items if isinstance(i, SourceDocument)}


def _problems(items: list[SourceDocument | SourceProblem]) -> dict[str, SourceProblem]:
    return {i.path: i for i in items if isinstance(i, SourceProblem)}


# --- folder -----------------------------------------------------------------------------------


def test_folder_lists_sorted_batches_and_reopens_by_path(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "node_modules").mkdir()
    (root / "node_modules" / "dep.js").write_text("x")
    for name in ("b.py", "a.md", "src/c.py", "src/d.txt", "z.rst"):
        (root / name).write_text(name)
    source = FolderSource(root)
    batches = list(source.iter_batches(2))
    assert [len(b) for b in batches] == [2, 2, 2]
    paths = [i.path for b in batches for i in b]
    assert paths == ["proj/node_modules", "proj/a.md", "proj/b.py", "proj/z.rst", "proj/src/c.py",
                     "proj/src/d.txt"]
    # A skipped folder is one item with its reason, and re-opening it (or a path inside it, as a
    # forged task message might) gives the same problem back.
    skipped = batches[0][0]
    assert isinstance(skipped, SourceProblem) and skipped.status is DocumentStatus.SKIPPED
    assert skipped.reason == "installed dependencies are not indexed"
    for path in ("proj/node_modules", "proj/node_modules/dep.js"):
        assert source.open_document(path) == SourceProblem(path, skipped.reason)
    again = source.open_document("proj/src/c.py")
    assert isinstance(again, SourceDocument) and again.read_bytes(100) == b"src/c.py"
    assert again.size_bytes == 8
    desc = source.describe()
    assert desc.kind is SourceKind.PATH and desc.uri == str(root)


def test_folder_reopen_refuses_paths_that_escape(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("s")
    source = FolderSource(root)
    for bad in ("proj/../secret.txt", "/etc/passwd", "other/x", "proj/missing.txt", "", "proj/\x00"):
        got = source.open_document(bad)
        assert isinstance(got, SourceProblem), bad


def test_folder_symlinks_inside_are_followed_outside_and_loops_are_problems(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "real.md").write_text("# real")
    outside = tmp_path / "outside.txt"
    outside.write_text("private")
    (root / "inside-link.md").symlink_to(root / "docs" / "real.md")
    (root / "escape.txt").symlink_to(outside)
    (root / "docs" / "loop").symlink_to(root / "docs")
    items = _all(FolderSource(root))
    assert "proj/inside-link.md" in _docs(items)
    problems = _problems(items)
    assert problems["proj/escape.txt"].reason == "symlink points outside the ingested folder"
    assert "loop" in problems["proj/docs/loop"].reason or "not followed" in problems["proj/docs/loop"].reason
    reopened = FolderSource(root).open_document("proj/escape.txt")
    assert isinstance(reopened, SourceProblem) and "outside" in reopened.reason


def test_folder_single_file_and_bad_roots(tmp_path: Path) -> None:
    f = tmp_path / "one.txt"
    f.write_text("hello")
    items = _all(FolderSource(f))
    assert [i.path for i in items] == ["one.txt"]
    with pytest.raises(InvalidInputError, match="does not exist"):
        FolderSource(tmp_path / "nope")
    with pytest.raises(InvalidInputError, match="at least 1"):
        list(FolderSource(f).iter_batches(0))


def test_read_bytes_refuses_over_limit_and_growing_files(tmp_path: Path) -> None:
    f = tmp_path / "grow.txt"
    f.write_text("abc")
    doc = SourceDocument.from_file(f, "grow.txt")
    with pytest.raises(DocumentTooLargeError, match="over the"):
        doc.read_bytes(2)
    f.write_text("abcdefgh")  # grew after listing: the listed size says fine, the read says no
    with pytest.raises(DocumentTooLargeError):
        doc.read_bytes(5)


# --- git --------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "myrepo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("def main():\n    return 1\n")
    (root / "README.md").write_text("# Repo\n")
    (root / "debug.log").write_text("ignored")
    (root / "build").mkdir()
    (root / "build" / "out.js").write_text("ignored too")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "first")
    return root


def test_git_worktree_respects_gitignore_and_records_head(repo: Path, tmp_path: Path) -> None:
    (repo / "new.txt").write_text("untracked but not ignored")
    source = GitSource(str(repo), cache_dir=tmp_path / "cache")
    items = _all(source)
    assert sorted(_docs(items)) == ["myrepo/.gitignore", "myrepo/README.md", "myrepo/new.txt",
                                    "myrepo/src/app.py"]
    # What .gitignore keeps out is reported once (a whole folder as the folder), never read.
    problems = _problems(items)
    assert {p: r.reason for p, r in problems.items()} == {
        "myrepo/build": "ignored by .gitignore", "myrepo/debug.log": "ignored by .gitignore"}
    for path in ("myrepo/build", "myrepo/build/out.js", "myrepo/debug.log"):
        assert source.open_document(path) == SourceProblem(path, "ignored by .gitignore")
    desc = source.describe()
    assert desc.kind is SourceKind.GIT and desc.commit == _git(repo, "rev-parse", "HEAD")
    doc = source.open_document("myrepo/src/app.py")
    assert isinstance(doc, SourceDocument) and doc.read_bytes(1000).startswith(b"def main")


def test_a_folder_in_a_git_work_tree_follows_its_gitignore(repo: Path) -> None:
    (repo / "src" / "build").mkdir()
    (repo / "src" / "build" / "steps.py").write_text("STEPS = 3\n")
    (repo / "docs" / "dist").mkdir(parents=True)
    (repo / "docs" / "dist" / "howto.md").write_text("# How to\n")
    items = _all(FolderSource(repo))
    assert sorted(_docs(items)) == ["myrepo/.gitignore", "myrepo/README.md",
                                    "myrepo/docs/dist/howto.md", "myrepo/src/app.py"]
    reasons = {p: r.reason for p, r in _problems(items).items()}
    assert reasons["myrepo/debug.log"] == "ignored by .gitignore"
    assert reasons["myrepo/src/build"] == "ignored by .gitignore"  # "build/" matches at any depth
    assert reasons["myrepo/.git"] == "version-control metadata is not indexed"
    assert reasons["myrepo/build"].startswith("build output at the source root")
    source = FolderSource(repo)
    assert source.open_document("myrepo/debug.log") == SourceProblem("myrepo/debug.log",
                                                                     "ignored by .gitignore")
    # Named explicitly, an ignored folder is read: whoever names it wants it.
    inside = _docs(_all(FolderSource(repo / "build")))
    assert list(inside) == ["build/out.js"]


def test_git_tracked_symlink_out_of_the_repo_is_a_problem(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("key")
    (repo / "leak").symlink_to(tmp_path / "secret")
    _git(repo, "add", "leak")
    _git(repo, "commit", "-q", "-m", "leak")
    problems = _problems(_all(GitSource(str(repo), cache_dir=tmp_path / "cache")))
    assert problems["myrepo/leak"].reason == "symlink points outside the repository"


def test_git_bare_repository_is_cloned_shallow_and_refreshed(repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "mirror.git"
    _git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    cache = tmp_path / "cache"
    first = GitSource(str(bare), cache_dir=cache)
    assert first.name == "mirror" and first.commit == _git(repo, "rev-parse", "HEAD")
    assert "mirror/src/app.py" in _docs(_all(first))
    assert _git(first.root, "rev-parse", "--is-shallow-repository") == "true"

    (repo / "src" / "extra.py").write_text("x = 2\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "second")
    _git(repo, "push", "-q", str(bare), "main")
    stale = GitSource(str(bare), cache_dir=cache, refresh=False)
    assert stale.commit == first.commit  # a worker re-opening documents sees the listed commit
    fresh = GitSource(str(bare), cache_dir=cache)
    assert fresh.commit == _git(repo, "rev-parse", "HEAD") != first.commit
    assert "mirror/src/extra.py" in _docs(_all(fresh))


def test_git_clone_failure_is_clear_and_hides_passwords(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="cannot fetch the git repository") as err:
        GitSource("http://user:hunter2@127.0.0.1:9/nothing.git", cache_dir=tmp_path, timeout_s=30,
                  allowed_hosts=["127.0.0.1"])
    assert "hunter2" not in str(err.value)
    assert not list((tmp_path / "git").glob("*.tmp*"))  # the half clone is gone


@pytest.mark.parametrize("uri", [
    "https://github.com/python/cpython.git", "http://example.com/r.git", "ssh://git@example.com/r.git",
    "git@github.com:owner/repo.git", "example.com:owner/repo",
])
def test_git_allowed_remote_uris(uri: str) -> None:
    assert parse_git_uri(uri, [], development=False).remote == uri


@pytest.mark.parametrize(("uri", "message"), [
    ("ext::sh -c touch% /tmp/pwned", "transport helpers"),
    ("fd::17", "transport helpers"),
    ("git://example.com/r.git", "scheme 'git' is not allowed"),
    ("ftp://example.com/r.git", "scheme 'ftp' is not allowed"),
    ("-uexploit", "must not start with '-'"),
    ("https://", "no host"),
    ("", "empty"),
    ("https://example.com/r.git\n--upload-pack=evil", "control characters"),
    ("file://remote-host/srv/r.git", "must name a local path"),
])
def test_git_disallowed_uris_are_refused(uri: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_git_uri(uri, [], development=True)


def test_git_local_paths_only_under_allowed_roots(repo: Path, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    with pytest.raises(PermissionDeniedError, match="outside the allowed ingest roots"):
        parse_git_uri(str(repo), [allowed], development=True)
    with pytest.raises(PermissionDeniedError, match="outside the allowed ingest roots"):
        parse_git_uri(repo.as_uri(), [allowed], development=True)
    with pytest.raises(PermissionDeniedError, match="CORRAL_INGEST_ALLOWED_ROOTS"):
        parse_git_uri(str(repo), [], development=False)
    assert parse_git_uri(repo.as_uri(), [tmp_path], development=False).local == repo.resolve()
    with pytest.raises(InvalidInputError, match="not a git repository"):
        GitSource(str(allowed), cache_dir=tmp_path / "cache")
    with pytest.raises(InvalidInputError, match="branch"):
        GitSource(str(repo), cache_dir=tmp_path / "cache", branch="--upload-pack=x")


# --- uploads and archives ---------------------------------------------------------------------

LIMITS = ArchiveLimits(max_file_bytes=1024 * 1024, max_total_bytes=4 * 1024 * 1024, max_files=50,
                       max_ratio=100.0)


def _zip(path: Path, entries: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_upload_of_one_file_uses_its_given_name(tmp_path: Path) -> None:
    f = tmp_path / "upload-123.tmp"
    f.write_text("# Notes\n")
    source = ArchiveSource(f, cache_dir=tmp_path / "cache", limits=LIMITS, name="../../notes.md")
    items = _all(source)
    assert [i.path for i in items] == ["notes.md"]
    assert isinstance(source.open_document("notes.md"), SourceDocument)
    assert source.describe().kind is SourceKind.UPLOAD


def test_zip_is_extracted_safely_and_reopened_by_path(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "docs.zip", {
        "guide/intro.md": b"# Intro\n", "guide/api.py": b"def f(): pass\n", "top.txt": b"top",
        "../evil.txt": b"escape", "/abs/path.txt": b"absolute", "a/../../b.txt": b"climb",
        "C:\\win\\x.txt": b"drive", "n/" + "x" * 2000: b"too long a name",
    }, symlink="guide/link")
    source = ArchiveSource(archive, cache_dir=tmp_path / "cache", limits=LIMITS)
    items = _all(source)
    docs, problems = _docs(items), _problems(items)
    assert sorted(docs) == ["docs/guide/api.py", "docs/guide/intro.md", "docs/top.txt"]
    assert all(p.status is DocumentStatus.FAILED for k, p in problems.items() if "link" not in k)
    assert len([p for p in problems.values() if "unsafe path" in p.reason]) == 5
    assert all(len(p) <= 2048 for p in problems)
    assert problems["docs/guide/link"].reason == "symlink in archive is not extracted"
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "evil.txt").exists()
    doc = source.open_document("docs/guide/intro.md")
    assert isinstance(doc, SourceDocument) and doc.read_bytes(100) == b"# Intro\n"
    assert isinstance(source.open_document("docs/../../etc/passwd"), SourceProblem)
    # A second source over the same upload reuses the extraction (and its problems).
    again = ArchiveSource(archive, cache_dir=tmp_path / "cache", limits=LIMITS)
    assert [i.path for i in _all(again)] == [i.path for i in items]


def test_zip_bomb_and_limits(tmp_path: Path) -> None:
    zeros = b"\0" * (3 * 1024 * 1024)  # compresses ~1000:1
    archive = _zip(tmp_path / "bomb.zip", {"ok.txt": b"fine", "bomb.bin": zeros,
                                           "big.txt": os.urandom(LIMITS.max_file_bytes + 1)})
    items = _all(ArchiveSource(archive, cache_dir=tmp_path / "cache", limits=LIMITS))
    problems = _problems(items)
    assert "zip bomb" in problems["bomb/bomb.bin"].reason
    assert "over the" in problems["bomb/big.txt"].reason
    assert list(_docs(items)) == ["bomb/ok.txt"]

    many = _zip(tmp_path / "many.zip", {f"f{i:03}.txt": b"x" for i in range(60)})
    items = _all(ArchiveSource(many, cache_dir=tmp_path / "cache", limits=LIMITS))
    assert len(_docs(items)) == 50
    assert "more than 50 files" in _problems(items)["many"].reason

    total = ArchiveLimits(max_file_bytes=1024 * 1024, max_total_bytes=1500, max_files=50, max_ratio=1e9)
    archive = _zip(tmp_path / "total.zip", {f"p{i}.txt": b"ab" * 300 for i in range(4)})
    items = _all(ArchiveSource(archive, cache_dir=tmp_path / "cache2", limits=total))
    assert len(_docs(items)) == 2
    assert all("uncompressed limit" in p.reason for p in _problems(items).values())


def test_zip_entry_lying_about_its_size_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("liar.txt", b"b" * 5000)
    data = bytearray(buf.getvalue())
    # Patch the declared uncompressed size (local header and central directory) down to 10 bytes.
    local = data.find(b"PK\x03\x04")
    data[local + 22 : local + 26] = (10).to_bytes(4, "little")
    central = data.find(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(data))
    items = _all(ArchiveSource(archive, cache_dir=tmp_path / "cache", limits=LIMITS))
    problem = _problems(items)["liar/liar.txt"]
    assert problem.status is DocumentStatus.FAILED and "corrupt" in problem.reason
    assert not _docs(items)


def test_not_a_zip_is_refused_as_a_whole(tmp_path: Path) -> None:
    f = tmp_path / "fake.zip"
    f.write_bytes(b"this is no archive")
    with pytest.raises(InvalidInputError, match="not a readable zip archive"):
        ArchiveSource(f, cache_dir=tmp_path / "cache", limits=LIMITS)
    assert not list((tmp_path / "cache" / "archives").glob("*"))


# --- factory ----------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing at a fresh data dir (no model needed: sources never load one)."""
    from corral.core.config import get_settings

    for key in list(os.environ):
        if key.startswith("CORRAL_") and not key.startswith(("CORRAL_TEST_", "CORRAL_REQUIRE")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_open_source_builds_each_kind_and_refuses_bad_arguments(
    repo: Path, tmp_path: Path, data_dir: Path
) -> None:
    assert isinstance(open_source("path", str(repo)), FolderSource)
    git = open_source(SourceKind.GIT, str(repo), {"branch": "main"}, refresh=False)
    assert isinstance(git, GitSource) and git.describe().options == {"branch": "main"}
    upload = tmp_path / "n.txt"
    upload.write_text("x")
    assert isinstance(open_source("upload", str(upload), {"name": "notes.txt"}), ArchiveSource)
    zipped = _zip(tmp_path / "u.zip", {"a.md": b"# A"})
    items = _all(open_source("upload", str(zipped)))
    assert [i.path for i in items] == ["u/a.md"]
    assert (data_dir / "cache" / "archives").is_dir()  # extracted under the data dir's cache
    with pytest.raises(InvalidInputError, match="unknown source kind"):
        open_source("s3", "bucket")
    with pytest.raises(InvalidInputError, match="unknown option"):
        open_source("git", str(repo), {"depth": 5})


def test_reopening_any_listed_path_gives_the_same_outcome(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("x")
    (repo / "out-link").symlink_to(tmp_path / "outside.txt")
    (repo / "dir-link").symlink_to(repo / "src")
    (repo / "src" / "loop").symlink_to(repo)
    (repo / "in-link.py").symlink_to(repo / "src" / "app.py")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "links")
    for source in (FolderSource(repo), GitSource(str(repo), cache_dir=tmp_path / "cache")):
        listed = _all(source)
        assert any(isinstance(i, SourceProblem) for i in listed)
        for item in listed:
            again = source.open_document(item.path)
            assert type(again) is type(item), item
            if isinstance(item, SourceProblem):
                assert isinstance(again, SourceProblem) and again.reason == item.reason


def test_same_zip_uploaded_under_two_names_keeps_each_name(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"x.md": b"# X"})
    first = _all(ArchiveSource(archive, cache_dir=tmp_path / "cache", limits=LIMITS, name="one.zip"))
    second = _all(ArchiveSource(archive, cache_dir=tmp_path / "cache", limits=LIMITS, name="two.zip"))
    assert [i.path for i in first] == ["one/x.md"] and [i.path for i in second] == ["two/x.md"]


def test_paths_too_long_for_the_database_become_problems(tmp_path: Path) -> None:
    root = tmp_path / "deep"
    deep = root.joinpath(*["d" * 200] * 11)
    deep.mkdir(parents=True)
    (deep / "f.txt").write_text("x")
    (root / "ok.txt").write_text("y")
    items = _all(FolderSource(root))
    assert [i.path for i in items if isinstance(i, SourceDocument)] == ["deep/ok.txt"]
    (problem,) = [i for i in items if isinstance(i, SourceProblem)]
    assert "longer than 2048" in problem.reason and len(problem.path) <= 2048
