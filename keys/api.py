"""The protected endpoints under /api/v1/ (DESIGN §4).

Every endpoint is made with `@api_endpoint(api)`, naming the catalogue API it belongs to (or
ANY_API for whoami); keys/urls.py lists each route with its view. Adding a catalogue API
takes its catalogue row, its data here and its two routes in keys/urls.py.
"""

from functools import wraps

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from keys import auth, usage
from keys.demo_data import DEMO_DATA
from keys.problems import problem

ANY_API = auth.ANY_API
ALLOWED_METHODS = ("GET", "HEAD")


def api_endpoint(api: str):
    """Make a view callable only by a verified key granted `api` (its `.api` says which).

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
        return endpoint

    return decorate


@api_endpoint(ANY_API)
def whoami(request: HttpRequest, caller: auth.Caller) -> HttpResponse:
    return JsonResponse(
        {
            "identifier": caller.identifier,
            "name": caller.name,
            "apis": sorted(caller.apis),
            "expires_on": caller.expires_on.isoformat(),
        }
    )


def demo_list(api: str):
    """The list endpoint of a catalogue API serving demo data."""
    items = DEMO_DATA[api]

    @api_endpoint(api)
    def collection(request: HttpRequest, caller: auth.Caller) -> HttpResponse:
        return JsonResponse({"api": api, "items": items})

    return collection


def demo_item(api: str):
    """The item endpoint of a catalogue API serving demo data."""
    by_id = {item["id"]: item for item in DEMO_DATA[api]}

    @api_endpoint(api)
    def item(request: HttpRequest, caller: auth.Caller, item_id: str) -> HttpResponse:
        if item_id not in by_id:
            raise Http404("No such item.")
        return JsonResponse({"api": api, "item": by_id[item_id]})

    return item
