"""The Streaming pages under Audit history: who may see and change destinations, the secret
shown once and never recorded, errors next to their fields, Send test, replay, /readyz."""

import datetime
import re

import pytest
from django.utils import timezone

from keys.audit import chain, delivery
from keys.models import AuditEvent, StreamDestination
from keys.models.streaming import new_secret

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action
STREAMING = "/audit/streaming/"
ADD = "/audit/streaming/add/"


def webhook_fields(url="https://siem.example.com/collector", **extra) -> dict:
    return {
        "name": "Splunk",
        "kind": "webhook",
        "url": url,
        "secret_choice": "generate",
        "batch_size": "100",
        "is_active": "on",
        **extra,
    }


def add(client, **fields) -> StreamDestination:
    response = client.post(ADD, webhook_fields(**fields))
    assert response.status_code == 200, response.content.decode()[:2000]
    return StreamDestination.objects.get(name=fields.get("name", "Splunk"))


def events_of(action) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


# --- who may -------------------------------------------------------------------------------


def test_anonymous_people_are_sent_to_log_in(client):
    response = client.get(STREAMING)
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("path", [STREAMING, ADD])
def test_staff_may_not_see_the_streaming_pages(login, alice, path):
    assert login(alice).get(path).status_code == 403


def test_an_auditor_sees_delivery_but_cannot_add_or_test(login, dave, carol):
    StreamDestination.objects.create(name="SIEM", url="https://siem.example.com/in", secret="s")
    client = login(dave)
    page = client.get(STREAMING)
    assert page.status_code == 200
    assert b"SIEM" in page.content and b"Add destination" not in page.content
    assert client.get(ADD).status_code == 403
    identifier = StreamDestination.objects.get().identifier
    assert client.post(f"{STREAMING}{identifier}/test/").status_code == 403
    assert client.post(f"{STREAMING}{identifier}/replay/", {"from_seq": 1}).status_code == 403
    assert client.post(f"{STREAMING}{identifier}/remove/").status_code == 403


def test_send_test_and_replay_take_post_only(login, carol):
    destination = StreamDestination.objects.create(name="S", url="https://s.example/", secret="s")
    client = login(carol)
    assert client.get(f"{STREAMING}{destination.identifier}/test/").status_code == 405
    assert client.get(f"{STREAMING}{destination.identifier}/replay/").status_code == 405


def test_an_unknown_destination_is_404(login, carol):
    assert login(carol).get(f"{STREAMING}dst_000000000000/").status_code == 404


# --- adding --------------------------------------------------------------------------------


def test_adding_a_webhook_shows_its_generated_secret_once_and_records_no_secret(login, carol):
    client = login(carol)
    response = client.post(ADD, webhook_fields())

    destination = StreamDestination.objects.get()
    assert destination.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert destination.secret not in client.get(STREAMING).content.decode()
    assert (
        destination.secret
        not in client.get(f"{STREAMING}{destination.identifier}/").content.decode()
    )
    (event,) = events_of(Action.DESTINATION_ADDED)
    assert event.details["after"]["url"] == "https://siem.example.com/collector"
    assert event.details["secret"] == "set"
    assert destination.secret not in str(event.details)


def test_custom_header_values_are_kept_but_never_recorded_nor_shown(login, carol):
    client = login(carol)
    destination = add(
        client, headers_text="Authorization: Splunk 1f2e3d4c-hec-token\nX-Index: audit"
    )

    assert destination.headers == {"Authorization": "Splunk 1f2e3d4c-hec-token", "X-Index": "audit"}
    (event,) = events_of(Action.DESTINATION_ADDED)
    assert event.details["after"]["header_names"] == ["Authorization", "X-Index"]
    assert "1f2e3d4c" not in str(event.details)
    edit_page = client.get(f"{STREAMING}{destination.identifier}/").content.decode()
    assert "1f2e3d4c" not in edit_page and "Authorization" in edit_page


def test_query_values_of_the_url_are_neither_recorded_nor_shown(login, carol):
    client = login(carol)
    url = "https://splunk.example.com/services/collector/raw?token=hec-secret-1&sourcetype=kp"
    destination = add(client, url=url)

    assert destination.url == url
    (event,) = events_of(Action.DESTINATION_ADDED)
    assert event.details["after"]["url"] == (
        "https://splunk.example.com/services/collector/raw?token=…&sourcetype=…"
    )
    assert "hec-secret-1" not in client.get(STREAMING).content.decode()


def test_credentials_in_the_url_are_refused(login, carol):
    response = login(carol).post(ADD, webhook_fields(url="https://user:pw@siem.example.com/in"))
    assert response.status_code == 400
    assert "Put credentials in a custom header" in response.content.decode()


def test_a_plain_http_url_is_refused_next_to_the_url_field(login, carol):
    response = login(carol).post(ADD, webhook_fields(url="http://siem.example.com/in"))
    assert response.status_code == 400
    assert re.search(
        r'id="id_url".*?errorlist.*?must start with https://', response.content.decode(), re.S
    )
    assert not StreamDestination.objects.exists()
    assert not events_of(Action.DESTINATION_ADDED)


def test_plain_http_to_localhost_only_when_the_setting_allows_it(login, carol, settings):
    client = login(carol)
    assert client.post(ADD, webhook_fields(url="http://127.0.0.1:9/in")).status_code == 400
    settings.AUDIT_STREAM_ALLOW_HTTP_LOCALHOST = True
    add(client, url="http://127.0.0.1:9/in")
    assert (
        client.post(ADD, webhook_fields(name="Other", url="http://10.0.0.5/in")).status_code == 400
    )


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("Authorization Splunk x", "is not “Name: value”"),
        ("X-KeyPortal-Signature: forged", "the portal sets X-KeyPortal-Signature itself"),
        ("Content-Type: text/plain", "the portal sets Content-Type itself"),
    ],
)
def test_a_bad_custom_header_is_refused_next_to_its_field(login, carol, line, error):
    response = login(carol).post(ADD, webhook_fields(headers_text=line))
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not StreamDestination.objects.exists()


def test_an_entered_secret_must_be_long_enough(login, carol):
    client = login(carol)
    short = client.post(ADD, webhook_fields(secret_choice="enter", entered_secret="short"))
    assert short.status_code == 400 and "at least 32 characters" in short.content.decode()
    secret = "s" * 40
    response = client.post(ADD, webhook_fields(secret_choice="enter", entered_secret=secret))
    assert response.status_code == 302
    assert StreamDestination.objects.get().secret == secret
    assert secret not in str(events_of(Action.DESTINATION_ADDED)[0].details)


def test_a_syslog_destination_needs_a_host_and_port(login, carol):
    client = login(carol)
    fields = {"name": "rsyslog", "kind": "syslog_tls", "batch_size": "100", "is_active": "on"}
    response = client.post(ADD, fields)
    assert response.status_code == 400
    page = response.content.decode()
    assert "Give the syslog receiver" in page and "Give a port between 1 and 65535" in page
    response = client.post(ADD, {**fields, "host": "logs.example.com", "port": "6514"})
    assert response.status_code == 302
    destination = StreamDestination.objects.get()
    assert (destination.kind, destination.target, destination.secret) == (
        "syslog_tls",
        "logs.example.com:6514",
        "",
    )


# --- changing, removing ---------------------------------------------------------------------


def test_a_change_is_recorded_before_and_after_and_keeps_the_secret(login, carol):
    client = login(carol)
    destination = add(client)
    secret = destination.secret
    response = client.post(
        f"{STREAMING}{destination.identifier}/",
        webhook_fields(url="https://other.example.com/in", secret_choice="keep", batch_size="50"),
    )
    assert response.status_code == 302
    destination.refresh_from_db()
    assert destination.secret == secret and destination.batch_size == 50
    (event,) = events_of(Action.DESTINATION_CHANGED)
    assert event.details["changes"]["url"] == {
        "before": "https://siem.example.com/collector",
        "after": "https://other.example.com/in",
    }
    assert "secret" not in event.details


def test_a_new_secret_is_shown_once_and_recorded_as_replaced(login, carol):
    client = login(carol)
    destination = add(client)
    old = destination.secret
    response = client.post(f"{STREAMING}{destination.identifier}/", webhook_fields())
    destination.refresh_from_db()
    assert destination.secret != old and destination.secret in response.content.decode()
    (event,) = events_of(Action.DESTINATION_CHANGED)
    assert event.details["secret"] == "replaced"
    assert old not in str(event.details) and destination.secret not in str(event.details)


def test_removing_asks_first_then_removes_and_records_it(login, carol):
    client = login(carol)
    destination = add(client)
    path = f"{STREAMING}{destination.identifier}/remove/"
    assert b"Stop streaming" in client.get(path).content
    assert client.post(path).status_code == 302
    assert not StreamDestination.objects.exists()
    (event,) = events_of(Action.DESTINATION_REMOVED)
    assert event.details["before"]["name"] == "Splunk"
    assert AuditEvent.Action.DESTINATION_REMOVED in AuditEvent.SECURITY_ACTIONS


# --- replay ----------------------------------------------------------------------------------


def test_replay_moves_the_position_back_and_is_recorded(login, carol):
    client = login(carol)
    destination = add(client)
    StreamDestination.objects.filter(pk=destination.pk).update(last_acked_seq=1)
    response = client.post(f"{STREAMING}{destination.identifier}/replay/", {"from_seq": "1"})
    assert response.status_code == 302
    destination.refresh_from_db()
    assert destination.last_acked_seq == 0
    (event,) = events_of(Action.DESTINATION_REPLAYED)
    assert event.details["last_acked_seq"] == {"before": 1, "after": 0}


@pytest.mark.parametrize("from_seq", ["0", "3", "x"])
def test_replay_cannot_skip_unacknowledged_events(login, carol, from_seq):
    client = login(carol)
    destination = add(client)
    StreamDestination.objects.filter(pk=destination.pk).update(last_acked_seq=1)
    response = client.post(f"{STREAMING}{destination.identifier}/replay/", {"from_seq": from_seq})
    assert response.status_code == 400
    assert b"errorlist" in response.content
    destination.refresh_from_db()
    assert destination.last_acked_seq == 1
    assert not events_of(Action.DESTINATION_REPLAYED)


# --- Send test, status -----------------------------------------------------------------------


def test_send_test_says_what_the_receiver_answered(
    login, carol, make_receiver, settings, certificates
):
    settings.AUDIT_STREAM_CA_BUNDLE = str(certificates.ca)
    receiver = make_receiver(new_secret())
    destination = StreamDestination.objects.create(
        name="Local", url=receiver.url, secret=receiver.secret
    )
    client = login(carol)
    events = AuditEvent.objects.count()

    page = client.post(f"{STREAMING}{destination.identifier}/test/", follow=True)

    assert "Test message to “Local”: HTTP 204 No Content." in page.content.decode()
    assert receiver.stored_documents()[0]["test"] is True
    assert AuditEvent.objects.count() == events  # a test message is no event
    receiver.stop()
    page = client.post(f"{STREAMING}{destination.identifier}/test/", follow=True)
    assert "Test message to “Local” failed: connection refused." in page.content.decode()


def test_readyz_and_the_page_show_lag_sent_failed_and_last_error(client, login, carol, settings):
    settings.AUDIT_STREAM_TIMEOUT_SECONDS = 2
    destination = StreamDestination.objects.create(
        name="Down", url="https://127.0.0.1:9/in", secret="s"
    )
    half_a_minute_ago = timezone.now() - datetime.timedelta(seconds=30)
    chain.record(Action.CATALOGUE_CHANGED, details={"n": 1}, at=half_a_minute_ago)
    delivery.deliver_batch(destination.pk, "test-sender")

    status = client.get("/readyz").json()["streaming"]["Down"]
    assert status["sent"] == 0 and status["failed"] == 1
    assert status["last_error"] == "connection refused"
    assert status["lag_seconds"] >= 30 and status["last_acked_seq"] == 0
    page = login(carol).get(STREAMING).content.decode()
    assert "connection refused" in page
    StreamDestination.objects.filter(pk=destination.pk).update(last_acked_seq=1)
    assert client.get("/readyz").json()["streaming"]["Down"]["lag_seconds"] == 0
