"""SCIM documents in and out: a User resource, the PATCH operations, filters and errors.

Pure functions over JSON values: nothing here reads the database. What identity providers
really send is accepted as well as the RFC's form: Microsoft Entra ID's capitalised ops
("Replace"), booleans as strings ("False") and `emails[type eq "work"].value` paths; Okta's
PATCH without a path (`{"op": "replace", "value": {"active": false}}`). Attribute names are
case-insensitive (RFC 7643 §2.1). Attributes of the User schemas that the portal does not keep
(displayName, title, addresses, the enterprise extension, ...) are accepted and ignored, so a
provider's default attribute mapping works; a name outside those schemas is refused.
"""

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
CONTENT_TYPE = "application/scim+json"

# Core User attributes (RFC 7643 §4.1) the portal does not keep: accepted, ignored.
IGNORED = frozenset(
    {
        "displayname",
        "nickname",
        "profileurl",
        "title",
        "usertype",
        "preferredlanguage",
        "locale",
        "timezone",
        "password",  # Okta may push one; SCIM users sign in through single sign-on
        "phonenumbers",
        "ims",
        "photos",
        "addresses",
        "groups",
        "entitlements",
        "roles",  # roles come from the portal's admins or the SSO claim, never from SCIM
        "x509certificates",
        "schemas",
        "id",
        "meta",
    }
)
IGNORED_NAME_PARTS = frozenset({"formatted", "middlename", "honorificprefix", "honorificsuffix"})
# Read-only or structural: a PATCH may not target them.
NOT_PATCHABLE = frozenset({"id", "meta", "schemas", "groups"})


class ScimError(Exception):
    """A refusal in RFC 7644 §3.12 form: the status, a scimType for 400s, a detail."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type

    def document(self) -> dict:
        doc: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status)}
        if self.scim_type:
            doc["scimType"] = self.scim_type
        doc["detail"] = self.detail
        return doc


def bad(detail: str, scim_type: str = "invalidValue") -> ScimError:
    return ScimError(400, detail, scim_type)


@dataclasses.dataclass(frozen=True)
class ScimUser:
    """What the portal keeps of a SCIM User."""

    user_name: str
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    active: bool = True
    external_id: str = ""


def parse_body(raw: bytes) -> dict:
    """The request's JSON object, or a 400 invalidSyntax."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("The request body is not valid JSON.", "invalidSyntax") from None
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", "invalidSyntax")
    return body


def _folded(mapping: Mapping) -> dict[str, Any]:
    """The mapping with its keys lower-cased: SCIM attribute names ignore case."""
    return {str(key).lower(): value for key, value in mapping.items()}


def _text(value: Any, attribute: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad(f"{attribute} must be a string.")
    return value


def _boolean(value: Any, attribute: str) -> bool:
    # Entra ID (without its aadOptscim062020 flag) sends "True"/"False" as strings.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise bad(f"{attribute} must be true or false.")


def _chosen_email(value: Any) -> str:
    """The address of the primary entry of an `emails` list, else the work one, else the first."""
    if value is None:
        return ""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise bad("emails must be a list of objects.")
    entries = [_folded(item) for item in value]
    if not entries:
        return ""
    for entry in entries:
        if "primary" in entry and _boolean(entry["primary"], "emails.primary"):
            return _text(entry.get("value"), "emails.value")
    for entry in entries:
        if str(entry.get("type", "")).lower() == "work":
            return _text(entry.get("value"), "emails.value")
    return _text(entries[0].get("value"), "emails.value")


def user_from_resource(body: Mapping, *, active: bool = True) -> ScimUser:
    """The User a POST or PUT body describes; attributes it leaves out are empty (PUT replaces),
    except `active`, which is then `active` (a PUT that leaves it out reactivates no one)."""
    fields = _folded(body)
    user_name = _text(fields.get("username"), "userName")
    if not user_name:
        raise bad("userName is required.", "invalidValue")
    name = fields.get("name") or {}
    if not isinstance(name, dict):
        raise bad("name must be an object.")
    name = _folded(name)
    given = fields.get("active")
    return ScimUser(
        user_name=user_name,
        given_name=_text(name.get("givenname"), "name.givenName"),
        family_name=_text(name.get("familyname"), "name.familyName"),
        email=_chosen_email(fields.get("emails")),
        active=active if given is None else _boolean(given, "active"),
        external_id=_text(fields.get("externalid"), "externalId"),
    )


# --- PATCH (RFC 7644 §3.5.2) ----------------------------------------------------------------

_CORE_PREFIX = USER_SCHEMA.lower() + ":"
_ATTRIBUTE = re.compile(r"^([a-z][a-z0-9_$-]*)(?:\.([a-z][a-z0-9_$-]*))?$")
# emails[type eq "work"].value, emails[primary eq true]: the portal keeps one address.
_EMAILS_FILTERED = re.compile(r"^emails\[[^\]]*\](?:\.([a-z]+))?$")


def apply_patch(user: ScimUser, body: Mapping) -> ScimUser:
    """The User after the PATCH body's operations, in order; all or nothing (raises first)."""
    operations = _folded(body).get("operations")
    if not isinstance(operations, list) or not operations:
        raise bad("A PATCH needs a non-empty Operations list.", "invalidSyntax")
    for operation in operations:
        if not isinstance(operation, dict):
            raise bad("Each operation must be an object.", "invalidSyntax")
        op = _folded(operation)
        kind = str(op.get("op", "")).lower()
        if kind not in {"add", "replace", "remove"}:
            raise bad(
                f"Unknown PATCH op {op.get('op')!r}: add, replace or remove.", "invalidSyntax"
            )
        path, value = op.get("path"), op.get("value")
        if path is not None and not isinstance(path, str):
            raise bad("path must be a string.", "invalidPath")
        if kind == "remove":
            if not path:
                raise bad("A remove operation needs a path.", "noTarget")
            user = _remove(user, path)
        elif path:
            user = _set(user, path, value)
        elif isinstance(value, dict):
            # Okta, and Entra ID with its compliance flag: {"active": false},
            # {"name.givenName": "Kkom", "urn:…:enterprise:2.0:User:employeeNumber": "1"}.
            for key, item in value.items():
                user = _set(user, str(key), item)
        else:
            raise bad("An operation without a path needs an object value.", "invalidValue")
    return user


def _target(path: str) -> tuple[str, str | None]:
    """(attribute, sub-attribute or None) of a PATCH path, lower-cased; ("", None) to ignore."""
    path = path.strip().lower()
    if path.startswith(ENTERPRISE_SCHEMA.lower()):
        return "", None
    path = path.removeprefix(_CORE_PREFIX)
    if match := _EMAILS_FILTERED.match(path):
        return "emails", match.group(1) or ""
    match = _ATTRIBUTE.match(path)
    if not match:
        raise bad(f"Unsupported path {path!r}.", "invalidPath")
    attribute, sub = match.groups()
    if attribute in NOT_PATCHABLE:
        raise bad(f"{attribute} cannot be changed.", "mutability")
    if attribute in IGNORED:
        return "", None
    if attribute not in {"username", "name", "emails", "active", "externalid"}:
        raise bad(f"Unknown attribute {attribute!r}.", "invalidPath")
    if attribute == "name" and sub in IGNORED_NAME_PARTS:
        return "", None
    if sub is not None and (attribute, sub) not in {
        ("name", "givenname"),
        ("name", "familyname"),
        ("emails", "value"),
    }:
        raise bad(f"Unknown attribute {attribute}.{sub}.", "invalidPath")
    return attribute, sub


def _set(user: ScimUser, path: str, value: Any) -> ScimUser:
    attribute, sub = _target(path)
    change = dataclasses.replace
    if attribute == "username":
        if not _text(value, "userName"):
            raise bad("userName cannot be empty.")
        return change(user, user_name=value)
    if attribute == "active":
        return change(user, active=_boolean(value, "active"))
    if attribute == "externalid":
        return change(user, external_id=_text(value, "externalId"))
    if attribute == "name" and sub == "givenname":
        return change(user, given_name=_text(value, "name.givenName"))
    if attribute == "name" and sub == "familyname":
        return change(user, family_name=_text(value, "name.familyName"))
    if attribute == "name":
        if not isinstance(value, dict):
            raise bad("name must be an object.")
        for key, item in value.items():
            user = _set(user, f"name.{key}", item)
        return user
    if attribute == "emails" and sub == "value":  # emails[type eq "work"].value, emails.value
        return change(user, email=_text(value, "emails.value"))
    if attribute == "emails":  # emails, emails[type eq "work"]: objects with a value
        return change(user, email=_chosen_email(value if isinstance(value, list) else [value]))
    return user  # an ignored attribute


def _remove(user: ScimUser, path: str) -> ScimUser:
    attribute, sub = _target(path)
    change = dataclasses.replace
    if attribute in {"username", "active"}:
        raise bad(f"{path} cannot be removed.", "mutability")
    if attribute == "externalid":
        return change(user, external_id="")
    if attribute == "name":
        if sub in {None, "givenname"}:
            user = change(user, given_name="")
        if sub in {None, "familyname"}:
            user = change(user, family_name="")
        return user
    if attribute == "emails":
        return change(user, email="")
    return user


# --- filters (RFC 7644 §3.4.2.2): the equality lookups providers make --------------------------

FILTERABLE = {
    "username": "userName",
    "externalid": "externalId",
    "emails": "emails",
    "emails.value": "emails",
    'emails[type eq "work"].value': "emails",
}
_FILTER = re.compile(r'^\s*(\S+(?:\s+eq\s+"work"\]\.value)?)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.I)


def parse_filter(text: str) -> tuple[str, str]:
    """(attribute, value) of `attribute eq "value"`; other filters are refused (400)."""
    match = _FILTER.match(text)
    attribute = match and FILTERABLE.get(re.sub(r"\s+", " ", match.group(1)).lower())
    if not match or not attribute:
        raise bad('Supported filters: userName, externalId or emails eq "value".', "invalidFilter")
    try:
        value = json.loads(f'"{match.group(2)}"')
    except ValueError:
        raise bad("The filter's value is not a valid string.", "invalidFilter") from None
    if any(ord(char) < 32 for char in value):
        raise bad("The filter's value holds control characters.", "invalidFilter")
    return attribute, value


def resource(user: ScimUser, *, scim_id: str, location: str, created: str) -> dict:
    """The User as SCIM shows it."""
    doc: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": scim_id}
    if user.external_id:
        doc["externalId"] = user.external_id
    doc["userName"] = user.user_name
    formatted = " ".join(part for part in (user.given_name, user.family_name) if part)
    doc["name"] = {
        "givenName": user.given_name,
        "familyName": user.family_name,
        "formatted": formatted,
    }
    doc["displayName"] = formatted or user.user_name
    doc["active"] = user.active
    doc["emails"] = [{"value": user.email, "type": "work", "primary": True}] if user.email else []
    doc["meta"] = {"resourceType": "User", "created": created, "location": location}
    return doc
