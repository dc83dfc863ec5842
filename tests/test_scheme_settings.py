"""Per-scheme settings (``--set SCHEME.FIELD=VALUE``) in a grid of schemes, and errors that
name the scheme lacking a setting (issue 33). Requests are only resolved: nothing trains."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ipbench.cli.main import app
from ipbench.core.errors import IpbenchError
from ipbench.engine.expfile import load_grid
from ipbench.engine.grid import expand, grid_from_options
from ipbench.engine.request import resolve
from ipbench.engine.sweep import plan


def requests(tmp_path, schemes: str, **settings: str) -> dict:
    grid = grid_from_options(schemes, "synthetic", "smoke", attacks="none", overrides=settings)
    return {r.scheme: r for r in expand(grid, str(tmp_path), device="cpu")}


def test_a_scheme_prefix_sets_that_schemes_runs_only(tmp_path):
    reqs = requests(tmp_path, "mlock,adip", **{"mlock.gamma": "0.3"})
    assert reqs["mlock"].overrides == {"gamma": "0.3"} and reqs["adip"].overrides == {}
    assert resolve(reqs["mlock"]).scheme.config.gamma == 0.3
    assert resolve(reqs["adip"]).scheme.config.gamma != 0.3
    # the per-scheme value wins over one given to all, for that scheme only
    reqs = requests(tmp_path, "mlock,adip", gamma="0.1", **{"mlock.gamma": "0.3"})
    assert resolve(reqs["mlock"]).scheme.config.gamma == 0.3
    assert resolve(reqs["adip"]).scheme.config.gamma == 0.1
    # the same run as asking for the scheme alone: the stored request is the same
    alone = requests(tmp_path, "mlock", gamma="0.3")["mlock"]
    assert requests(tmp_path, "mlock,none", **{"mlock.gamma": "0.3"})["mlock"].stored() == (
        alone.stored()
    )


def test_a_prefix_reaches_every_kind_of_setting(tmp_path):
    reqs = requests(
        tmp_path, "mlock,none", **{"none.epochs": "2", "mlock.attack.prune.rates": "0.5"}
    )
    assert resolve(reqs["none"]).preset.train.epochs == 2
    assert resolve(reqs["mlock"]).preset.train.epochs != 2
    assert reqs["mlock"].overrides == {"attack.prune.rates": "0.5"}


def test_a_setting_some_schemes_lack_names_them_and_the_way_out(tmp_path):
    with pytest.raises(IpbenchError) as info:
        requests(tmp_path, "mlock,none", gamma="0.3")
    message = str(info.value)
    assert "scheme none has no setting 'gamma'" in message and "scheme: -" not in message
    assert "--set mlock.gamma=0.3" in message
    with pytest.raises(IpbenchError, match="schemes none, chaow have no setting 'gamma'"):
        requests(tmp_path, "mlock,none,chaow", gamma="0.3")
    # one scheme alone: the error names it too
    with pytest.raises(IpbenchError, match="unknown setting 'gamma' for scheme none; "):
        requests(tmp_path, "none", gamma="0.3")
    with pytest.raises(IpbenchError, match="unknown scheme none field 'gamma'"):
        requests(tmp_path, "none", **{"scheme.gamma": "0.3"})
    # a setting for a scheme the grid does not run is a typo, not silently dropped
    with pytest.raises(IpbenchError, match="is for scheme adip, which is not run here"):
        requests(tmp_path, "mlock,none", **{"adip.gamma": "0.3"})
    assert not (tmp_path / "ipbench.sqlite").exists()  # all before anything ran


def test_the_command_line_takes_the_prefix_and_names_the_scheme(tmp_path):
    base = ["run", "--preset", "smoke", "--device", "cpu", "--attacks", "none"]
    base += ["-d", "synthetic", "--workdir", str(tmp_path / "w")]
    result = CliRunner().invoke(app, [*base, "-s", "mlock,none", "--set", "gamma=0.3"])
    assert result.exit_code == 2
    assert "scheme none has no setting 'gamma'" in result.output
    assert "--set mlock.gamma=0.3" in result.output


def test_sweeps_and_experiment_files_take_the_prefix(tmp_path):
    reqs = plan("mlock", "synthetic", "smoke", {"mlock.gamma": "0.1,0.3"}, "0", str(tmp_path))
    assert [r.overrides for r in reqs] == [{"gamma": "0.1"}, {"gamma": "0.3"}]
    path = tmp_path / "exp.yaml"
    path.write_text(
        "schemes: [mlock, adip]\ndatasets: synthetic\npresets: smoke\nattacks: none\n"
        "overrides:\n  mlock.gamma: 0.3\n"
    )
    reqs = {r.scheme: r for r in expand(load_grid(path), str(tmp_path), device="cpu")}
    assert reqs["mlock"].overrides == {"gamma": "0.3"} and reqs["adip"].overrides == {}
