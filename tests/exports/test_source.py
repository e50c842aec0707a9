"""orchestrator.exports.source: classification of policy sources, default names, provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.exports.source import (
    MODEL_NAME,
    SOURCE_KEYS,
    FolderSource,
    HubSource,
    default_model_name,
    is_hub_repo_id,
    matching_models,
    parse_source,
    provenance_metadata,
    source_matches,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


def _no_dirs(_: str) -> bool:
    return False


_part = st.from_regex(r"\A[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,20}[A-Za-z0-9_])?\Z").filter(
    lambda s: "--" not in s and ".." not in s
)
repo_ids = st.builds(lambda a, b: f"{a}/{b}", _part, _part)
revisions = st.one_of(
    st.none(),
    st.from_regex(r"\A[0-9a-f]{40}\Z"),
    st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_./-]{0,30}[A-Za-z0-9_]\Z").filter(
        lambda s: ".." not in s and s != "main"
    ),
)
hub_sources = st.builds(HubSource, repo_ids, revisions)
folder_sources = st.builds(
    lambda parts: FolderSource(Path("/", *parts)),
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="/\x00"), min_size=1, max_size=30
        ).filter(lambda s: s not in (".", "..")),
        min_size=1,
        max_size=6,
    ),
)


@pytest.mark.parametrize("text", ["so100_pick", "so100_pick:3", "a", "tiny.act-2:10"])
def test_served_names_are_none(text: str) -> None:
    assert parse_source(text, is_dir=_no_dirs) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("LaetusH/act_so101_beyond", HubSource("LaetusH/act_so101_beyond", None)),
        ("org/name@main", HubSource("org/name", None)),
        (f"org/name@{SHA}", HubSource("org/name", SHA)),
        ("org/name@refs/pr/1", HubSource("org/name", "refs/pr/1")),
        ("hf:org/name@v1.0", HubSource("org/name", "v1.0")),
    ],
)
def test_hub_ids(text: str, expected: HubSource) -> None:
    assert parse_source(text, is_dir=_no_dirs) == expected


def test_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert parse_source("/abs/ckpt") == FolderSource(Path("/abs/ckpt"))
    assert parse_source("./ckpt") == FolderSource(tmp_path / "ckpt")
    assert parse_source("../ckpt") == FolderSource(tmp_path.parent / "ckpt")
    assert parse_source("~/ckpt") == FolderSource(Path.home() / "ckpt")
    assert parse_source("dir:/x/y") == FolderSource(Path("/x/y"))
    # An existing folder wins over the hub id it also looks like.
    assert parse_source("org/name") == FolderSource(tmp_path / "org" / "name")
    assert parse_source("other/name") == HubSource("other/name", None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "a:b",
        "name:1.5",
        "a/b/c",
        "org/na--me",
        "org/na..me",
        "-org/name",
        "org/name@",
        "org/name@bad rev",
        "org/name@a..b",
        "org/" + "n" * 100,
        "org/name:3",
    ],
)
def test_bad_sources_raise_clearly(text: str) -> None:
    with pytest.raises(ValueError, match=r"\S") as info:
        parse_source(text, is_dir=_no_dirs)
    assert "\n" not in str(info.value)


@given(hub_sources)
def test_hub_round_trip(source: HubSource) -> None:
    assert is_hub_repo_id(source.repo_id)
    assert parse_source(str(source), is_dir=_no_dirs) == source


@given(st.one_of(hub_sources, folder_sources))
def test_default_names_are_valid_and_deterministic(source: HubSource | FolderSource) -> None:
    name = default_model_name(source)
    assert MODEL_NAME.match(name), name
    assert default_model_name(source) == name
    # A default name is a served name, never mistaken for a hub id or folder.
    assert parse_source(name, is_dir=_no_dirs) is None


@given(hub_sources, hub_sources)
def test_distinct_hub_sources_get_distinct_names(a: HubSource, b: HubSource) -> None:
    if a != b:
        assert default_model_name(a) != default_model_name(b)


def test_default_name_examples() -> None:
    assert default_model_name(HubSource("LaetusH/act_so101_beyond", None)) == (
        "LaetusH--act_so101_beyond"
    )
    assert default_model_name(HubSource("org/name", "v2")) == "org--name--v2"
    run = FolderSource(Path("/data/outputs/train/act_so100/checkpoints/last/pretrained_model"))
    assert default_model_name(run).startswith("act_so100-")
    other = FolderSource(Path("/elsewhere/act_so100/checkpoints/last/pretrained_model"))
    assert default_model_name(other) != default_model_name(run)


@given(hub_sources, st.from_regex(r"\A[0-9a-f]{40}\Z"))
def test_hub_provenance_matches_itself(source: HubSource, sha: str) -> None:
    info = provenance_metadata(source, sha)
    assert set(info) == set(SOURCE_KEYS)
    assert info["source"] == f"hf:{source.repo_id}@{sha}"
    assert source_matches(info, source)
    # The resolved sha (full or 7+ leading digits) names the same export.
    assert source_matches(info, HubSource(source.repo_id, sha))
    assert source_matches(info, HubSource(source.repo_id.upper(), sha[:7]))
    assert not source_matches(info, HubSource(source.repo_id, sha[:6]))
    assert not source_matches(info, HubSource(source.repo_id + "x", source.revision))
    assert not source_matches(info, FolderSource(Path("/") / source.repo_id))


def test_hub_revisions_must_agree() -> None:
    info = provenance_metadata(HubSource("org/name", None), SHA)
    assert info["source_revision_requested"] == "main"
    assert source_matches(info, HubSource("org/name", None))
    assert not source_matches(info, HubSource("org/name", "v2"))
    assert not source_matches(info, HubSource("org/name", "f" * 40))
    tagged = provenance_metadata(HubSource("org/name", "v2"), SHA)
    assert source_matches(tagged, HubSource("org/name", "v2"))
    assert not source_matches(tagged, HubSource("org/name", None))


@given(folder_sources)
def test_folder_provenance(source: FolderSource) -> None:
    info = provenance_metadata(source)
    assert info["source"] == f"dir:{source.path}"
    assert source_matches(info, source)
    assert not source_matches(info, FolderSource(source.path / "x"))
    assert not source_matches(info, HubSource("org/name", None))


def test_models_without_provenance_never_match() -> None:
    assert not source_matches({}, HubSource("org/name", None))
    assert not source_matches({}, FolderSource(Path("/x")))


def test_matching_models_prefers_the_default_name() -> None:
    source = HubSource("org/name", None)
    info = provenance_metadata(source, SHA)
    other = provenance_metadata(HubSource("org/other", None), SHA)
    models = {"zz": info, "aa": info, "org--name": info, "b": other, "c": {}}
    assert matching_models(models, source) == ["org--name", "aa", "zz"]
    assert matching_models({"b": other}, source) == []
