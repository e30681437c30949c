"""Pages of filtered lists: the filters carried from one page link to the next."""

from django.http import HttpRequest


def filter_query(request: HttpRequest, *cursors: str) -> str:
    """The request's query string without its page cursors, for the pages' links."""
    query = request.GET.copy()
    for cursor in cursors:
        query.pop(cursor, None)
    return query.urlencode()
