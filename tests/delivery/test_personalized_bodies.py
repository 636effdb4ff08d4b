"""A personalized bundle under faults: lost answers, 5xx, a stop, then resumes. Each recipient is
delivered once, with its own values, and every retry of a key carries the body of its first attempt."""

from __future__ import annotations

import yaml

from line_oa.campaign.personalization import bundle_of
from line_oa.campaign.validation import campaign_from_text
from tests.unit.campaign_docs import valid_document

from .test_engine import recipients
from .test_exactly_once_regressions import no_duplicates, send


def personalized_bundle():
    document = valid_document()
    document["content"]["messages"] = [
        {"type": "text", "text": 'Hi {{ profile.first_name | default("there") }}!'},
        {"type": "text", "text": "Yours: https://shop.example.com/?n={{ profile.first_name }}"},
    ]
    campaign, problems = campaign_from_text(
        yaml.safe_dump(document, allow_unicode=True), "test_campaign.yaml"
    )
    assert problems == []
    return bundle_of(campaign)


def test_lost_answers_then_a_stop_then_resumes_deliver_each_own_name_once(line_conn, ledger_factory, sim):
    bundle = personalized_bundle()
    people = recipients(600)
    names = {profile: (f"名前{n}" if n % 5 else None) for n, (profile, _user) in enumerate(people)}
    engines: list = []

    def personalize(row):
        return bundle.render({"first_name": names[row.profile_id]})

    def stop_midway(requests: int) -> None:
        if requests == 250:
            engines[0].request_stop("stopped")

    sim.admin.configure(faults={"seed": 9, "accepted_then_lost_rate": 0.3, "error_500_rate": 0.2})
    ledger = ledger_factory()
    first = send(
        line_conn, ledger, people, mode="multicast", personalize=personalize, on_engine=engines.append,
        on_request=stop_midway,
    )  # fmt: skip
    assert first.stopped_reason == "stopped"
    assert 0 < first.sent < 600
    second = send(line_conn, ledger, people, mode="multicast", personalize=personalize)
    assert second.resent > 0, "no key whose answer was lost was sent again"
    sim.admin.configure(faults={"seed": 9, "accepted_then_lost_rate": 0.0, "error_500_rate": 0.0})
    third = send(line_conn, ledger, people, mode="multicast", personalize=personalize)  # what retries left
    assert first.sent + second.sent + third.sent == 600, (first.to_dict(), second.to_dict(), third.to_dict())
    no_duplicates(sim)

    record = sim.admin.deliveries()
    assert len({d["request_id"] for d in record}) == 600, (
        "a personalized bundle is sent by push, never multicast"
    )
    user_of = {user: profile for profile, user in people}
    bodies: dict[str, list] = {}
    for delivery in record:
        body = bodies.get(delivery["messages_hash"]) or sim.admin.messages(delivery["messages_hash"])
        bodies[delivery["messages_hash"]] = body
        name = names[user_of[delivery["to"]]]
        assert body[0]["text"] == f"Hi {name or 'there'}!", delivery["to"]
