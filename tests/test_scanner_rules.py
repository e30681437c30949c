"""The secret-scanner rules in docs/ find Key Portal credentials in sample files, and only those.

docs/gitleaks.toml and docs/trufflehog.yaml are read as the tools read them, and their regexes
run with Python's `re` (the patterns use nothing where Go's RE2 and `re` differ) over
tests/samples/.
"""

import re
import tomllib
from pathlib import Path

import pytest

from keys import tokens

DOCS = Path(__file__).resolve().parent.parent / "docs"
SAMPLES = Path(__file__).resolve().parent / "samples"


def gitleaks_rules() -> dict[str, re.Pattern]:
    config = tomllib.loads((DOCS / "gitleaks.toml").read_text())
    return {rule["id"]: re.compile(rule["regex"]) for rule in config["rules"]}


def trufflehog_rules() -> dict[str, re.Pattern]:
    """{detector name: regex} from the YAML's one-line, single-quoted regex entries."""
    rules, name = {}, None
    for line in (DOCS / "trufflehog.yaml").read_text().splitlines():
        if found := re.fullmatch(r"  - name: (\w+)", line):
            name = found[1]
        elif found := re.fullmatch(r"      \w+: '(.*)'", line):
            rules[name] = re.compile(found[1].replace("''", "'"))
    return rules


SCANNERS = {"gitleaks": gitleaks_rules(), "trufflehog": trufflehog_rules()}
KIND = {
    "key-portal-password": "password",
    "key-portal-identifier": "identifier",
    "KeyPortalPassword": "password",
    "KeyPortalIdentifier": "identifier",
}


def findings(rules: dict[str, re.Pattern], text: str) -> list[tuple[str, str]]:
    """(kind, token) of every hit, the token being the rule's one capture group."""
    return sorted(
        (KIND[name], hit[1]) for name, pattern in rules.items() for hit in pattern.finditer(text)
    )


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def test_both_scanners_have_a_password_and_an_identifier_rule_with_the_same_regexes():
    assert sorted(KIND[name] for name in SCANNERS["gitleaks"]) == ["identifier", "password"]
    assert sorted(KIND[name] for name in SCANNERS["trufflehog"]) == ["identifier", "password"]
    assert {p.pattern for p in SCANNERS["gitleaks"].values()} == {
        p.pattern for p in SCANNERS["trufflehog"].values()
    }


@pytest.mark.parametrize("scanner", SCANNERS)
def test_committed_credentials_are_found_in_every_form(scanner):
    found = findings(SCANNERS[scanner], sample("leaky_settings.py.txt"))
    assert [kind for kind, _token in found] == ["identifier"] * 3 + ["password"] * 3
    for kind, token in found:
        assert tokens.is_identifier(token) if kind == "identifier" else tokens.is_password(token)
    passwords = [token for kind, token in found if kind == "password"]
    assert sorted(len(p) for p in passwords) == [
        tokens.LEGACY_PASSWORD_LENGTH,
        tokens.PASSWORD_LENGTH,
        tokens.PASSWORD_LENGTH,
    ]


@pytest.mark.parametrize("scanner", SCANNERS)
def test_a_regex_cannot_check_the_checksum_so_a_typo_is_found_too(scanner):
    found = findings(SCANNERS[scanner], sample("leaky.env"))
    assert [kind for kind, _token in found] == ["password", "password"]
    assert sorted(tokens.is_password(token) for _kind, token in found) == [False, True]


@pytest.mark.parametrize("scanner", SCANNERS)
def test_near_misses_are_not_found(scanner):
    text = sample("near_misses.txt")
    assert text.count(" = ") == 12  # every near miss is there to be missed
    assert findings(SCANNERS[scanner], text) == []


@pytest.mark.parametrize("scanner", SCANNERS)
def test_every_generated_token_is_found_whole_wherever_it_stands(scanner):
    for _ in range(50):
        identifier = tokens.generate_identifier()
        password = tokens.generate_password(identifier)
        for text in (f"{identifier}:{password}", f'"{password}"\n{identifier}', password):
            assert findings(SCANNERS[scanner], text) == sorted(
                [("identifier", identifier), ("password", password)]
                if identifier in text
                else [("password", password)]
            )
