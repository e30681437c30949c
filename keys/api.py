"""The protected endpoints under /api/v1/ (DESIGN §4).

Every endpoint is registered with `@api_endpoint(api, route)`, naming the catalogue API it
belongs to (or ANY_API for whoami); keys.api_urls builds the URL conf from the registry, so
a route cannot exist without the API it is authorised by. Adding a catalogue API takes its
catalogue row and its data or view here, nothing else.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from keys import auth, usage
from keys.demo_data import DEMO_DATA
from keys.problems import problem

ANY_API = auth.ANY_API
ALLOWED_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Endpoint:
    api: str
    route: str  # a regex under /api/v1/, without anchors or trailing slash
    name: str
    view: Callable[..., HttpResponse]


_endpoints: list[Endpoint] = []


def endpoints() -> list[Endpoint]:
    return list(_endpoints)


def api_endpoint(api: str, route: str, *, name: str):
    """Register a view for `route`, callable only by a verified key granted `api`.

    The view is called as view(request, caller, **url_kwargs). Authentication comes first,
    whatever the method, so an anonymous caller learns nothing but 401; CSRF does not apply,
    since no cookie can authenticate an API call.
    """

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def endpoint(request: HttpRequest, **kwargs) -> HttpResponse:
            try:
                caller = auth.authenticate(request, api)
            except auth.Refusal as refusal:
                return refusal.response()
            if request.method not in ALLOWED_METHODS:
                return problem(405, headers={"Allow": ", ".join(ALLOWED_METHODS)})
            usage.record_use(caller.key_id, caller.ip)
            response = view(request, caller, **kwargs)
            response["Cache-Control"] = "no-store"
            return response

        endpoint.api = api
        _endpoints.append(Endpoint(api=api, route=route, name=name, view=endpoint))
        return endpoint

    return decorate


@api_endpoint(ANY_API, "whoami", name="whoami")
def whoami(request: HttpRequest, caller: auth.Caller) -> HttpResponse:
    return JsonResponse(
        {
            "identifier": caller.identifier,
            "name": caller.name,
            "apis": sorted(caller.apis),
            "expires_on": caller.expires_on.isoformat(),
        }
    )


def demo_api(api: str, items: list[dict]) -> None:
    """Register the list and item endpoints of one catalogue API serving demo data."""
    by_id = {item["id"]: item for item in items}
    base = re.escape(api)

    @api_endpoint(api, base, name=f"{api}-list")
    def collection(request: HttpRequest, caller: auth.Caller) -> HttpResponse:
        return JsonResponse({"api": api, "items": items})

    @api_endpoint(api, rf"{base}/(?P<item_id>[A-Za-z0-9-]{{1,40}})", name=f"{api}-item")
    def item(request: HttpRequest, caller: auth.Caller, item_id: str) -> HttpResponse:
        if item_id not in by_id:
            raise Http404("No such item.")
        return JsonResponse({"api": api, "item": by_id[item_id]})


for _api, _items in DEMO_DATA.items():
    demo_api(_api, _items)
