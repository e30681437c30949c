"""Leaked-key reports: POST /api/v1/leaks (docs/design.md §8).

The request is that of GitHub's secret-scanning partner programme: a JSON list of
{"token", "type", "url", "source"}, signed with ECDSA P-256 / SHA-256 over the raw body, the
base64 DER signature in `Github-Public-Key-Signature` and the signing key's id in
`Github-Public-Key-Identifier`. Signatures are checked against the public keys the operator
saved in KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE; a report is the only authentication here, so no
key credentials, no cookie, no CSRF token.

Each token is judged on its own:
- the password of a usable key: the key is revoked at once ("reported leaked at <url>"),
  audited as the "leak report" actor, and its owner is mailed: true_positive;
- the password of a key already revoked or expired: true_positive, nothing changes (the key
  opens nothing any more, and its history already says why);
- an identifier (public by design), a made-up or mistyped token, a password of the old layout
  (which names no key: only the Argon2 hash of a password is stored, and trying every hash
  is no option) or of no key: false_positive.

The answer is GitHub's feedback format, with `token_hash` (SHA-256 of the token) rather than
`token_raw`, so that no response but the one that created it ever carries a password.

Only VERIFICATIONS_IN_REQUEST tokens that need an Argon2 verification (a password naming a
stored key) are judged before answering, those of usable keys first; the rest are judged
after the answer, by this process's leak_queue thread, and left out of the answer (GitHub's
feedback is optional). So a report of thousands of wrong passwords is answered at once
instead of after a minute of Argon2; a report for which the queue has no room gets 503.
"""

import base64
import binascii
import hashlib
import json
import logging
import unicodedata

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from keys import actions, tokens
from keys.api import leak_queue
from keys.api.problems import problem
from keys.lib.client_ip import client_ip
from keys.models import ApiKey

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "HTTP_GITHUB_PUBLIC_KEY_SIGNATURE"
KEY_IDENTIFIER_HEADER = "HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER"
# A P-256 DER signature is at most 72 bytes (96 in base64); GitHub's key ids are 64 hex digits.
MAX_HEADER_LENGTH = 200
# GitHub batches matches into one request; 256 KiB holds thousands of them. Each new-layout
# password of an existing key costs one Argon2 verification (~10 ms), and only a signed report
# gets that far.
MAX_REPORT_BYTES = 256 * 1024
# Argon2 verifications a report may cost before it is answered (~0.2 s); the rest come after.
VERIFICATIONS_IN_REQUEST = 20
ACTOR_LABEL = "leak report"
REASON_MAX_LENGTH = ApiKey._meta.get_field("revoke_reason").max_length

TRUE_POSITIVE = "true_positive"
FALSE_POSITIVE = "false_positive"
UNSIGNED_DETAIL = "A report must carry a valid signature of a configured public key."
BUSY_DETAIL = "Busy judging earlier reports; send this one again later."


@csrf_exempt
@sensitive_variables("body", "matches", "labels", "candidates", "now", "later", "jobs", "token")
def report(request: HttpRequest) -> HttpResponse:
    """Check the signature, then judge every reported token and answer the label of each."""
    if request.method != "POST":
        return problem(405, headers={"Allow": "POST"})
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return problem(400)
    if length > MAX_REPORT_BYTES:
        return problem(413, f"A report holds at most {MAX_REPORT_BYTES} bytes.")
    try:
        body = request.body
    except OSError:  # the client went away mid-body
        return problem(400)
    if not signed(
        body, request.META.get(KEY_IDENTIFIER_HEADER, ""), request.META.get(SIGNATURE_HEADER, "")
    ):
        return problem(401, UNSIGNED_DETAIL)
    matches = _parse(body)
    if matches is None:
        return problem(
            400, 'The body must be a JSON list of {"token", "type", "url", "source"} strings.'
        )
    ip = client_ip(request)
    labels: dict[str, bool] = {}
    candidates = _candidates(matches)
    for token in {match["token"] for match in matches} - candidates.keys():
        labels[token] = False  # names no stored key: nothing to verify
    now, later = _split(list(candidates.items()))
    jobs = [(token, key.pk, url, ip) for token, (key, url) in later]
    if not leak_queue.later(_judge_later, jobs):
        logger.error("Leak report refused: too many tokens wait to be judged already")
        return problem(503, BUSY_DETAIL, headers={"Retry-After": "60"})
    for token, (key, url) in now:
        labels[token] = _judge(token, key, url, ip)
    answer = [
        {
            "token_hash": hashlib.sha256(match["token"].encode()).hexdigest(),
            "token_type": match.get("type", ""),
            "label": TRUE_POSITIVE if labels[match["token"]] else FALSE_POSITIVE,
        }
        for match in matches
        if match["token"] in labels  # judged after answering: left out
    ]
    logger.info(
        "Leak report: %d tokens, %d true positives, %d judged after answering",
        len(matches),
        sum(1 for item in answer if item["label"] == TRUE_POSITIVE),
        len(later),
    )
    response = JsonResponse(answer, safe=False)
    response["Cache-Control"] = "no-store"
    return response


# The view is authorised by a signature, not by a key: it belongs to no catalogue API.
report.api = None  # type: ignore[attr-defined]  # mypy cannot declare a function's attribute


def signed(body: bytes, key_identifier: str, signature: str) -> bool:
    """True if signature (base64 DER ECDSA P-256/SHA-256 of body) is by a configured key."""
    if len(key_identifier) > MAX_HEADER_LENGTH or len(signature) > MAX_HEADER_LENGTH:
        return False
    public_key = public_keys().get(key_identifier)
    if public_key is None:
        return False
    try:
        der = base64.b64decode(signature, validate=True)
        public_key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def public_keys() -> dict[str, ec.EllipticCurvePublicKey]:
    """{key identifier: P-256 public key} from KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE.

    Read on every report (reports are rare), so replacing the file takes effect at once. A
    file that cannot be read or holds no usable key is logged, and refuses every report.
    """
    path = settings.KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE
    if not path:
        return {}
    try:
        with open(path, "rb") as file:
            document = json.load(file)
        entries = document["public_keys"]
        found = {
            str(entry["key_identifier"]): load_pem_public_key(entry["key"].encode())
            for entry in entries
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        logger.exception("KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE %s is unusable", path)
        return {}
    usable = {
        identifier: key
        for identifier, key in found.items()
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    }
    if len(usable) < len(found):
        logger.error("KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE %s holds keys other than P-256", path)
    return usable


@sensitive_variables("body", "matches")
def _parse(body: bytes) -> list[dict[str, str]] | None:
    """The reported matches, or None unless body is a list of objects with string fields."""
    try:
        matches = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8 JSON, or nested past the parser's depth
        return None
    if not isinstance(matches, list):
        return None
    for match in matches:
        if not isinstance(match, dict) or not isinstance(match.get("token"), str):
            return None
        if not all(isinstance(match.get(field, ""), str) for field in ("type", "url", "source")):
            return None
    return matches


@sensitive_variables("matches")
def _candidates(matches: list[dict[str, str]]) -> dict[str, tuple[ApiKey, str]]:
    """{token: (the stored key it names, the url it was found at)} for every reported token
    worth an Argon2 verification, in one query. Anything but a new-layout password naming a
    stored key is none (a token found in several places counts once, at its first url)."""
    named = {}
    for match in matches:
        identifier = tokens.identifier_of(match["token"])  # None: not a new-layout password
        if identifier is not None and match["token"] not in named:
            named[match["token"]] = (identifier, _printable(match.get("url", "")))
    keys = ApiKey.objects.select_related("owner").in_bulk(
        {identifier for identifier, _url in named.values()}, field_name="identifier"
    )
    return {
        token: (keys[identifier], url)
        for token, (identifier, url) in named.items()
        if identifier in keys
    }


def _split(candidates: list) -> tuple[list, list]:
    """(judged before answering, judged after): VERIFICATIONS_IN_REQUEST of them now, those of
    usable keys first (their revocation is what matters), in the report's order otherwise."""
    ordered = sorted(candidates, key=lambda item: item[1][0].status() != ApiKey.Status.ACTIVE)
    return ordered[:VERIFICATIONS_IN_REQUEST], ordered[VERIFICATIONS_IN_REQUEST:]


@sensitive_variables("token")
def _judge_later(token: str, key_id: int, url: str, ip: str | None) -> None:
    """Judge a token after its report was answered, against the key as it is by then."""
    key = ApiKey.objects.select_related("owner").filter(pk=key_id).first()
    if key is not None:
        _judge(token, key, url, ip)


@sensitive_variables("token")
def _judge(token: str, key: ApiKey, url: str, ip: str | None) -> bool:
    """True if token is the key's password; a usable key is revoked and its owner mailed."""
    # The current password, or the previous one while its overlap after a regeneration runs:
    # either still opens the key, so either leaked is a leak of the key.
    try:
        opens = tokens.verify_password(key.password_hash, token) or (
            key.previous_password_works
            and tokens.verify_password(key.previous_password_hash, token)
        )
    except tokens.StoredHashUnusable:
        logger.error("API key #%s: its stored password hash cannot be parsed", key.pk)
        return False
    if not opens:
        return False
    if key.status() != ApiKey.Status.ACTIVE:
        return True
    try:
        key = actions.revoke_key(
            key, actor=None, actor_label=ACTOR_LABEL, reason=_reason(url), ip=ip
        )
    except ValidationError:  # revoked meanwhile, by a concurrent report or a person
        return True
    _mail_owner(key, url)
    return True


def _printable(text: str) -> str:
    """text without control characters: it goes into the history and a mail."""
    return "".join(c for c in text if unicodedata.category(c)[0] != "C")


def _reason(url: str) -> str:
    """'reported leaked at <url>', cut to fit the column."""
    reason = f"reported leaked at {url}" if url else "reported leaked"
    return reason[:REASON_MAX_LENGTH]


def _mail_owner(key: ApiKey, url: str) -> None:
    """Tell the owner; the revocation stands whether or not the mail goes out."""
    if not key.owner.email:
        return
    try:
        send_mail(
            subject=f"Your API key “{key.name}” was revoked: its password was found in public",
            message=render_to_string("keys/leak_revoked.txt", {"key": key, "url": url}),
            from_email=None,
            recipient_list=[key.owner.email],
        )
    except Exception:
        logger.exception("Could not mail the owner of leaked key %s", key.identifier)
