"""The README and docs/ stay true: every relative link resolves (files and their #anchors), every key
of sweeps/default.yaml is in the spec reference, and the README's table of what is inside names
exactly what the registries hold."""

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: pathlib.Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def relative_links(page: pathlib.Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code is not a link
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        if not goal.exists():
            broken.append(target)
        elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
            broken.append(target)
    assert broken == [], f"{page.name}: links that do not resolve: {broken}"


def spec_keys(mapping: dict, prefix: str = "") -> list[str]:
    """Dotted keys of a YAML mapping; the keys of a list's mappings as `key[].sub`."""
    keys = []
    for key, value in mapping.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += spec_keys(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            keys += sorted({sub for item in value for sub in spec_keys(item, f"{prefix}{key}[].")})
    return keys


def test_every_key_of_the_default_spec_is_in_the_spec_reference():
    default = yaml.safe_load((ROOT / "sweeps" / "default.yaml").read_text())
    reference = (ROOT / "docs" / "spec.md").read_text()
    keys = spec_keys(default)
    assert len(keys) > 50
    assert [key for key in keys if f"| `{key}` |" not in reference] == []


def dataclass_keys(cls, prefix: str = "") -> list[str]:
    import dataclasses
    import typing

    keys, hints = [], typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        keys.append(prefix + field.name)
        if dataclasses.is_dataclass(hints[field.name]):
            keys += dataclass_keys(hints[field.name], f"{prefix}{field.name}.")
    return keys


def test_every_field_of_the_spec_dataclasses_is_in_the_spec_reference():
    from prune_ray.spec import SweepSpec

    reference = (ROOT / "docs" / "spec.md").read_text()
    assert [key for key in dataclass_keys(SweepSpec) if f"| `{key}` |" not in reference] == []


def test_the_readme_names_what_the_registries_hold():
    from prune_ray.data import list_datasets
    from prune_ray.models import list_models
    from prune_ray.plan import list_schedules
    from prune_ray.prune import list_methods
    from prune_ray.quantize import list_quantizers

    readme = (ROOT / "README.md").read_text()
    for word, names in (("models", list_models()), ("datasets", list_datasets()), ("methods", list_methods()),
                        ("schedules", list_schedules()), ("quantisers", list_quantizers())):
        row = next((line for line in readme.splitlines() if line.startswith(f"| {len(names)} {word} |")), None)
        assert row is not None, f"README: no '| {len(names)} {word} |' row"
        assert re.findall(r"`([^`]+)`", row.split("|")[2]) == sorted(names), row
