from ipbench.metrics.health import run_warnings


def test_a_lock_that_did_not_take_and_unreadable_identities_are_flagged():
    assert run_warnings({"A_pd": 70.0, "id_rate": 95.0}) == []
    flagged = run_warnings({"A_pd": -2.2, "id_rate": 0.4})
    assert len(flagged) == 2
    assert "A_pd = -2.20" in flagged[0] and "id_rate = 0.4%" in flagged[1]
    assert run_warnings({"A_pd": 0.0}) and run_warnings({"A_pd": 0.6})  # NTL on smoke: no lock
    assert run_warnings({"A_pd": 4.9}) and not run_warnings({"A_pd": 5.0})
    assert run_warnings({}) == []  # schemes without tracing are not flagged for it
