"""The commands of docs/deploy.md, where they can run without a throwaway machine.

The whole guide runs only through `docs/verify_guide.py run` (as root, on a throwaway Debian
machine); this checks the step that once stopped it, in a temporary directory.
"""

import grp
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"


def signing_key_commands() -> list[str]:
    """The guide's commands that create the audit signing key file."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", GUIDE.read_text(), flags=re.S | re.M)
    block = next((b for b in blocks if "openssl genpkey" in b), None)
    assert block, "docs/deploy.md no longer creates the audit signing key"
    return [line for line in block.splitlines() if "audit-signing-key.pem" in line]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_audit_signing_key_the_guide_creates_is_readable_by_the_service_group(tmp_path):
    # The service user reads the key through its group; openssl writes private keys with
    # mode 600 whatever the umask, so a chgrp alone leaves it unreadable to the service.
    group = grp.getgrgid(os.getgid()).gr_name
    script = "\n".join(
        line.replace("/etc/key-portal", str(tmp_path)).replace(" keyportal ", f" {group} ")
        for line in signing_key_commands()
    )
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True)

    mode = (tmp_path / "audit-signing-key.pem").stat().st_mode
    assert mode & stat.S_IRGRP, f"group cannot read it: {stat.filemode(mode)}"
    assert not mode & (stat.S_IWGRP | stat.S_IRWXO), f"too open: {stat.filemode(mode)}"


def manage_commands() -> list[str]:
    """Each `key-portal-manage` command of the guide's sh blocks, continuation lines joined."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", GUIDE.read_text(), flags=re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line for line in lines if line.startswith("key-portal-manage ")]


def test_key_portal_manage_is_never_given_a_file_under_root():
    # key-portal-manage runs as keyportal, which cannot read /root (mode 700); what the root
    # shell redirects in or out is fine.
    commands = manage_commands()
    assert len(commands) > 3, "the guide no longer runs key-portal-manage"
    for command in commands:
        arguments = re.sub(r"[<>]\s*\S+", "", command)
        assert "/root/" not in arguments, command


def test_the_scim_token_the_guide_creates_is_long_private_and_named_in_the_env_file(
    tmp_path, monkeypatch
):
    from portal.env import optional_secret

    blocks = re.findall(r"^```sh\n(.*?)^```$", GUIDE.read_text(), flags=re.S | re.M)
    block = next((b for b in blocks if "scim-token" in b), None)
    assert block, "docs/deploy.md no longer creates the SCIM token"
    group = grp.getgrgid(os.getgid()).gr_name
    script = block.replace("/etc/key-portal", str(tmp_path)).replace(" keyportal ", f" {group} ")
    (tmp_path / "env").write_text("SECRET_KEY=x\n")
    for _ in range(2):  # run twice: the env file names the token once
        subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True)

    token_file = tmp_path / "scim-token"
    mode = token_file.stat().st_mode
    assert mode & stat.S_IRGRP and not mode & (stat.S_IWGRP | stat.S_IRWXO), stat.filemode(mode)
    env_lines = (tmp_path / "env").read_text().splitlines()
    assert env_lines.count(f"SCIM_TOKEN_FILE={token_file}") == 1
    monkeypatch.delenv("SCIM_TOKEN", raising=False)
    monkeypatch.setenv("SCIM_TOKEN_FILE", str(token_file))
    assert len(optional_secret("SCIM_TOKEN", min_length=32)) >= 32
