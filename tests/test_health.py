from ipbench.metrics.health import run_warnings


def test_a_lock_that_did_not_take_and_unreadable_identities_are_flagged():
    assert run_warnings({"A_pd": 70.0, "id_rate": 95.0}) == []
    flagged = run_warnings({"A_pd": -2.2, "id_rate": 0.4})
    assert len(flagged) == 2
    assert "A_pd = -2.20" in flagged[0] and "id_rate = 0.4%" in flagged[1]
    assert run_warnings({"A_pd": 0.0}) and run_warnings({"A_pd": 0.6})  # NTL on smoke: no lock
    assert run_warnings({"A_pd": 4.9}) and not run_warnings({"A_pd": 5.0})
    assert run_warnings({}) == []  # schemes without tracing are not flagged for it


def test_a_protected_model_that_did_not_learn_the_task_is_flagged_though_it_locks():
    # resampling control on CIFAR-100 quick: A_pd just above the floor, A_ad 6.86 of 60.31
    found = run_warnings({"A_or": 60.31, "A_ad": 6.86, "A_pd": 5.87})
    assert len(found) == 1 and "A_ad = 6.86" in found[0] and "A_or = 60.31" in found[0]
    # the rule is a share of A_or, not a fixed drop: 30 of 60 keeps half, 29.9 does not
    assert not run_warnings({"A_or": 60.0, "A_ad": 30.0, "A_pd": 20.0})
    assert run_warnings({"A_or": 60.0, "A_ad": 29.9, "A_pd": 20.0})
    assert not run_warnings({"A_or": 91.6, "A_ad": 77.6, "A_pd": 67.0})  # a lock that trained
    assert not run_warnings({"A_ad": 6.86}) and not run_warnings({"A_or": 0.0, "A_ad": 0.0})
