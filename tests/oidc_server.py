"""A real OpenID Provider for the single sign-on tests: tests/oidc/provider.js on Node.js.

A pytest plugin (tests/conftest.py lists it). The `oidc_provider` fixture starts panva's
oidc-provider (OpenID-certified) on a free loopback port for one test, with the test accounts
the test gives it, and stops it afterwards. The npm packages are installed with `npm ci` from
tests/oidc/package-lock.json the first time (node_modules is not committed). Without node or
npm the tests that use it are skipped loudly; with CI=true they fail instead (.ci/run installs
Debian's nodejs and npm).
"""

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal.env import OIDC_PROVIDER_ID
from tests.servers import free_port, require, stop_process, wait_for

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc"
# oidc-provider 8.x runs on Node.js 18 (Debian 12's nodejs) and later.
NODE_MAJOR_AT_LEAST = 18


def _node_and_npm() -> tuple[str, str]:
    node, npm = shutil.which("node") or shutil.which("nodejs"), shutil.which("npm")
    if not node or not npm:
        require(
            "SKIPPED LOUDLY: Node.js and npm are needed for the OpenID Provider of the single "
            "sign-on tests (apt-get install nodejs npm)"
        )
    assert node and npm  # require() did not return
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < NODE_MAJOR_AT_LEAST:
        require(f"Node.js {version.stdout.strip()} is too old for oidc-provider 8 (needs 18+)")
    return node, npm


@pytest.fixture(scope="session")
def oidc_node() -> str:
    """The node executable, with tests/oidc/node_modules installed from the lock file."""
    node, npm = _node_and_npm()
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=PROVIDER_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in tests/oidc failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return node


class OidcProvider:
    """One running tests/oidc/provider.js, its client, and the accounts it knows."""

    client_id = "key-portal"
    client_secret = "test-only-oidc-client-secret"

    def __init__(self, node: str, directory: Path, redirect_uris: list[str]):
        self.node = node
        self.directory = directory
        self.redirect_uris = redirect_uris
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.accounts_file = directory / "accounts.json"
        self.faults_file = directory / "faults.json"
        self.log = directory / "provider.log"
        self.accounts: dict[str, dict] = {}
        self.proc: subprocess.Popen | None = None
        self._write(self.accounts_file, {})

    def add_account(self, login: str, *, groups=(), **claims) -> dict:
        """A person the provider knows as `login` (any password), with these claims."""
        account = {
            "sub": f"sub-{login}",
            "email": f"{login}@corp.example",
            "email_verified": True,
            "preferred_username": login,
            "name": login.title(),
            "groups": list(groups),
            **claims,
        }
        self.accounts[login] = account
        self._write(self.accounts_file, self.accounts)
        return account

    def set_groups(self, login: str, groups) -> None:
        """Change someone's groups at the provider, as its administrator would."""
        self.accounts[login]["groups"] = list(groups)
        self._write(self.accounts_file, self.accounts)

    def fail_token_endpoint(self, status: int) -> None:
        """The token endpoint answers `status` with an HTML body from now on."""
        self._write(self.faults_file, {"token_status": status})

    def start(self) -> "OidcProvider":
        command = [
            self.node,
            str(PROVIDER_DIR / "provider.js"),
            *("--port", str(self.port), "--issuer", self.issuer),
            *("--client-id", self.client_id, "--client-secret", self.client_secret),
            *[arg for uri in self.redirect_uris for arg in ("--redirect-uri", uri)],
            *("--accounts", str(self.accounts_file), "--faults", str(self.faults_file)),
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=PROVIDER_DIR, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for(self._discovery, timeout=30, what="oidc-provider", proc=self.proc)
        except (RuntimeError, TimeoutError) as error:
            self.stop()
            raise AssertionError(f"{error}\n{self.log.read_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def _discovery(self) -> bool:
        url = f"{self.issuer}/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)["issuer"] == self.issuer

    @staticmethod
    def _write(path: Path, data) -> None:
        # Whole or not at all: the provider reads the file at any moment.
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(data))
        partial.replace(path)


@pytest.fixture
def oidc_provider(oidc_node, live_server, tmp_path) -> Iterator[OidcProvider]:
    """A running OpenID Provider for this test, whose client is the live server's portal."""
    callback = f"/accounts/oidc/{OIDC_PROVIDER_ID}/login/callback/"
    redirect_uris = [
        live_server.url + callback,
        live_server.url.replace("localhost", "127.0.0.1") + callback,
    ]
    provider = OidcProvider(oidc_node, tmp_path, redirect_uris).start()
    yield provider
    provider.stop()
