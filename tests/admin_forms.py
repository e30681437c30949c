"""What the Django admin's forms post, for tests that change things through them."""


def user_change_form(user, **changes) -> dict:
    """The POST data of `user`'s change page as it stands, with `changes` made."""
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": user.email,
        "is_active": "on",
        "groups": [str(g.pk) for g in user.groups.all()],
        "date_joined_0": user.date_joined.date().isoformat(),
        "date_joined_1": "12:00:00",
        "last_login_0": "",
        "last_login_1": "",
    }
    return {**data, **changes}
