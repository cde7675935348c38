"""Release audiences (docs/clients.md, "Audiences"): the hook copies ``metadata.audience`` of
each OFREP answer into the signals it sends for it, so the server compares an audience's new
variant with that audience's own old variant. Counts are read back from the real server."""

from __future__ import annotations

from collections import Counter

from conftest import ctx

from rollgate_openfeature import RollgateSignalsHook


def test_signals_carry_the_audience_each_user_was_served_by(server, unique, ofrep_client):
    # Arrange: seniors stay on the old variant, the innovation tier at 50 %, everyone else 20 %
    suffix = unique("")
    innovation, seniors = f"innovation{suffix}", f"seniors{suffix}"
    server.call("PUT", f"/api/v1/segments/{innovation}", {
        "key": innovation, "when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}]})
    server.call("PUT", f"/api/v1/segments/{seniors}", {
        "key": seniors, "when": [{"attribute": "age", "op": "gte", "values": [60]}]})
    flag = unique("audiences")
    server.put_flag(flag, rollout=20.0)
    definition = server.call("GET", f"/api/v1/flags/{flag}")
    definition["audiences"] = [{"segment": seniors, "rollout": 0}, {"segment": innovation, "rollout": 50}]
    server.call("PUT", f"/api/v1/flags/{flag}", definition)
    token = server.client_token()
    hook = RollgateSignalsHook(server.url, token, flush_interval=60.0)
    client = ofrep_client(server, token, hook)

    # Act
    exposures, complaints, served = Counter(), Counter(), {}
    for i in range(240):
        attributes = {}
        if i % 3 == 0:
            attributes["tier"] = "innovation"
        if i % 8 == 0:
            attributes["age"] = 70
        d = client.get_boolean_details(flag, False, ctx(f"user-{i}", **attributes))
        assert d.error_code is None, d
        cohort = (d.variant, (d.flag_metadata or {}).get("audience"))
        served[f"user-{i}"] = cohort
        exposures[cohort] += 1
    for i in range(0, 240, 5):
        assert hook.complaint(flag, ctx(f"user-{i}"))
        complaints[served[f"user-{i}"]] += 1
    assert hook.flush(timeout=10), hook.stats()

    # Assert
    assert ("on", innovation) in exposures and ("off", seniors) in exposures, exposures
    assert ("on", seniors) not in exposures, exposures
    assert ("on", None) in exposures, exposures
    for (variant, audience), n in exposures.items():
        assert server.total(flag, variant, "exposure", audience) == n, (variant, audience)
    for (variant, audience), n in complaints.items():
        assert server.total(flag, variant, "complaint", audience) == n, (variant, audience)
    assert hook.close(timeout=5)
