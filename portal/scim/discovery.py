"""What the SCIM door supports, as RFC 7643 §5-§7 describe it: ServiceProviderConfig,
ResourceTypes and Schemas. Entra ID reads /Schemas when its provisioning is saved; Okta reads
ServiceProviderConfig."""

from django.http import HttpRequest

from portal.scim.protocol import LIST_SCHEMA, USER_SCHEMA, ScimError

CONFIG_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


def _url(request: HttpRequest, path: str) -> str:
    return request.build_absolute_uri(f"/scim/v2/{path}")


def service_provider_config(request: HttpRequest) -> dict:
    return {
        "schemas": [CONFIG_SCHEMA],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": 100},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "SCIM_TOKEN, sent as Authorization: Bearer <token>.",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": _url(request, "ServiceProviderConfig"),
        },
    }


def _user_type(request: HttpRequest) -> dict:
    return {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person who signs in to the portal.",
        "schema": USER_SCHEMA,
        "meta": {"resourceType": "ResourceType", "location": _url(request, "ResourceTypes/User")},
    }


def resource_types(request: HttpRequest, name: str | None) -> dict:
    if name is None:
        return _listed([_user_type(request)])
    if name != "User":
        raise ScimError(404, f"No resource type {name!r}: only User.")
    return _user_type(request)


def _attribute(name: str, *, required: bool = False, **extra) -> dict:
    return {
        "name": name,
        "type": "string",
        "multiValued": False,
        "required": required,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
        **extra,
    }


def _user_schema(request: HttpRequest) -> dict:
    return {
        "schemas": [SCHEMA_SCHEMA],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "What the portal keeps of a person; other User attributes are ignored.",
        "attributes": [
            _attribute(
                "userName",
                required=True,
                uniqueness="server",
                description="The portal user name: 150 characters at most, letters of one "
                "alphabet, digits and @/./+/-/_.",
            ),
            _attribute(
                "name",
                type="complex",
                subAttributes=[_attribute("givenName"), _attribute("familyName")],
            ),
            _attribute(
                "emails",
                type="complex",
                multiValued=True,
                description="The primary (else the work) address is kept.",
                subAttributes=[
                    _attribute("value"),
                    _attribute("type"),
                    _attribute("primary", type="boolean"),
                ],
            ),
            _attribute(
                "active",
                type="boolean",
                description="false deactivates the user: their keys are revoked, their "
                "sessions end.",
            ),
            _attribute("externalId", caseExact=True),
        ],
        "meta": {"resourceType": "Schema", "location": _url(request, f"Schemas/{USER_SCHEMA}")},
    }


def schemas(request: HttpRequest, urn: str | None) -> dict:
    if urn is None:
        return _listed([_user_schema(request)])
    if urn != USER_SCHEMA:
        raise ScimError(404, f"No schema {urn!r}: only {USER_SCHEMA}.")
    return _user_schema(request)


def _listed(resources: list[dict]) -> dict:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(resources),
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
